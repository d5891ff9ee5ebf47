"""Serving workers on other hosts: each serving host's relay, and the gateway's side of it.

A worker is reached through its unix socket, which exists only on the host that runs it. A host
whose workers the gateway cannot reach through a shared folder runs the relay (`m2d.relay_wsgi`,
M2D_SERVE_RELAY_URL names it): an HTTP front that passes one request to one local worker socket,
with the same checks as the gateway (no link followed, the socket owned by the worker's uid, the
response timeout, the answer's size cap), and nothing else. It holds no database connection and
serves no other path.

Between hosts the cases travel over TLS when the relay URL is https:// (the relay's certificate
and key: M2D_WEB_CERTFILE / M2D_WEB_KEYFILE; the gateway checks it against M2D_SERVE_RELAY_CA).
Each request is signed by the gateway with the secret both share (M2D_SERVE_RELAY_SECRET): an
HMAC-SHA256 of the method, the path, the time and the body's hash. The relay refuses an unsigned,
forged or stale request (older than M2D_SERVE_RELAY_MAX_SKEW seconds), so nobody else on the
hospital's network can ask the models, and a recorded request cannot be played again later.

Errors keep their meaning across the hop: a worker that timed out, broke off or gave a link for a
socket is reported by the relay as such, and the gateway recycles that worker as it would a local
one. A relay that cannot be reached is the host's problem, not the worker's: the gateway tries
another worker and never retires one for it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import http.client
import json
import logging
import re
import ssl
import time
from urllib.parse import urlsplit

from django.conf import settings

from .files import socket_path
from .workerclient import SocketRefused, WorkerBrokeOff, WorkerTimedOut, WorkerUnreachable, answer_of, ask

log = logging.getLogger(__name__)

OUTCOME = "X-M2D-Relay"  # how the relay's attempt went: answered, timed-out, broke-off, refused, unreachable
ROUTE = re.compile(r"^/workers/(?P<worker>[1-9][0-9]{0,11})/(?P<action>predict|ready)$")
METHODS = {"predict": "POST", "ready": "GET"}
# Time the relay may take on top of the worker's own response timeout before the gateway gives up on it.
MARGIN_SECONDS = 5.0
# A host whose relay does not take the connection this fast is cut off; the gateway then asks its
# workers last, for this long, so a host gone from the network does not hold every request.
CONNECT_SECONDS = 3.0
COOL_DOWN_SECONDS = 10.0
_cut_off: dict[str, float] = {}  # relay URL -> until when (this process's monotonic clock)


# A worker's own failure as the relay reports it (its outcome and status) and the gateway raises it
# again: subclasses before the WorkerUnreachable they specialise.
FAILURES = (
    ("timed-out", 504, WorkerTimedOut),
    ("refused", 502, SocketRefused),
    ("broke-off", 502, WorkerBrokeOff),
    ("unreachable", 502, WorkerUnreachable),
)


class RelayUnreachable(Exception):
    """The worker's host could not be asked (its relay down, refusing the gateway, or cut off)."""


def signature(secret: str, method: str, path: str, at: str, body: bytes) -> str:
    message = "\n".join((method, path, at, hashlib.sha256(body).hexdigest())).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _signed_well(method: str, path: str, at: str, body: bytes, given: str) -> str:
    """Why the request is refused ('' when its signature is good and fresh)."""
    secret = settings.M2D_SERVE_RELAY_SECRET
    if not secret:
        return "this relay has no M2D_SERVE_RELAY_SECRET and serves nobody"
    if not given or not at.isdigit():
        return "the request is not signed"
    if abs(time.time() - int(at)) > settings.M2D_SERVE_RELAY_MAX_SKEW:
        return "the request's time is too far from this host's clock (a replay, or a clock to set right)"
    if not hmac.compare_digest(signature(secret, method, path, at, body), given):
        return "the request's signature is wrong"
    return ""


# --- the gateway's side ---------------------------------------------------------------------------------


def ask_remote(relay_url: str, worker_id: int, action: str, body: dict | None, timeout: float, max_answer: int):
    """(status, answer) from a worker on another host, through its host's relay. Raises what a
    local ask raises for the worker's own failures, and RelayUnreachable for the host's."""
    parts = urlsplit(relay_url)
    path = f"/workers/{worker_id}/{action}"
    data = json.dumps(body).encode() if body is not None else b""
    at = str(int(time.time()))
    method = METHODS[action]
    headers = {
        "Content-Type": "application/json",
        "X-M2D-Time": at,
        "X-M2D-Signature": signature(settings.M2D_SERVE_RELAY_SECRET, method, path, at, data),
    }
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=CONNECT_SECONDS, context=_tls_context(settings.M2D_SERVE_RELAY_CA)
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=CONNECT_SECONDS)
    try:
        connection.connect()
        connection.sock.settimeout(timeout + MARGIN_SECONDS)
        connection.request(method, parts.path.rstrip("/") + path, body=data or None, headers=headers)
        response = connection.getresponse()
        raw = response.read(max_answer + 1)
    except (OSError, http.client.HTTPException) as exc:
        _cut_off[relay_url] = time.monotonic() + COOL_DOWN_SECONDS
        raise RelayUnreachable(f"the relay of its host ({parts.netloc}) cannot be reached: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            connection.close()
    _cut_off.pop(relay_url, None)
    outcome = response.getheader(OUTCOME, "")
    if outcome != "answered":
        reason = _reason(raw)
        for name, _, failure in FAILURES:
            if outcome == name:
                raise failure(reason)
        raise RelayUnreachable(
            f"the relay of its host ({parts.netloc}) refused the gateway ({response.status}: {reason})"
        )
    return answer_of(response.status, raw, max_answer)


@functools.cache
def _tls_context(cafile: str) -> ssl.SSLContext:
    """The relay's certificate is checked against the hospital's own CA (M2D_SERVE_RELAY_CA), or
    the system's when none is set; its name must match the relay URL's host."""
    return ssl.create_default_context(cafile=cafile or None)


def cut_off_lately(relay_url: str) -> bool:
    """Whether this process found the relay unreachable in the last COOL_DOWN_SECONDS."""
    return bool(relay_url) and _cut_off.get(relay_url, 0.0) > time.monotonic()


def _reason(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error", ""))[:500]
    except (ValueError, AttributeError):
        return raw[:200].decode("utf-8", "replace")


# --- the relay (a WSGI application) ----------------------------------------------------------------------


def application(environ, start_response):
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    if path == "/health":
        return _reply(start_response, 200, "", {"ok": True})
    route = ROUTE.match(path)
    if route is None:
        return _reply(start_response, 404, "", {"error": "no such path"})
    if METHODS[route["action"]] != method:
        return _reply(start_response, 405, "", {"error": f"{route['action']} takes {METHODS[route['action']]}"})
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _reply(start_response, 400, "", {"error": "a bad Content-Length"})
    if length > _max_body():
        return _reply(start_response, 413, "", {"error": "the request is over the serving body limit"})
    body = environ["wsgi.input"].read(length) if length else b""
    refused = _signed_well(
        method, path, environ.get("HTTP_X_M2D_TIME", ""), body, environ.get("HTTP_X_M2D_SIGNATURE", "")
    )
    if refused:
        log.warning("relay: refused %s %s from %s: %s", method, path, environ.get("REMOTE_ADDR"), refused)
        return _reply(start_response, 401, "", {"error": refused})
    try:
        status, answer = ask(
            socket_path(int(route["worker"])),
            settings.M2D_SERVE_UID,
            method,
            f"/{route['action']}",
            json.loads(body) if body else None,
            timeout=settings.M2D_SERVE_RESPONSE_TIMEOUT,
            max_answer=settings.M2D_SERVE_MAX_ANSWER_BYTES,
        )
    except ValueError:
        return _reply(start_response, 400, "", {"error": "the body is not JSON"})
    except (WorkerTimedOut, WorkerUnreachable) as exc:
        outcome, status = next((name, code) for name, code, failure in FAILURES if isinstance(exc, failure))
        if outcome == "refused":
            log.warning("relay: worker %s: %s", route["worker"], exc)
        return _reply(start_response, status, outcome, {"error": str(exc)})
    return _reply(start_response, status, "answered", answer)


def _max_body() -> int:
    # The gateway sends the inputs base64-encoded in JSON: 4/3 of the raw limit and a little more.
    return settings.M2D_SERVE_MAX_BODY * 4 // 3 + 64 * 1024


def _reply(start_response, status: int, outcome: str, answer: dict):
    data = json.dumps(answer).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    if outcome:
        headers.append((OUTCOME, outcome))
    start_response(f"{status} {http.client.responses.get(status, 'Status')}", headers)
    return [data]
