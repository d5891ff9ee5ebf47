"""The tracking gateway: the only way out of a run container.

A run reaches MLflow through TCP 127.0.0.1:3001 -> forwarder -> a unix socket -> this gateway ->
the real MLflow server. One gateway serves one submission, so everything it sees belongs to that
submission's owner. It is the single policy point for what a run may say to the outside:
- only the owner's credentials (injected when absent, anything else refused);
- only the tracking calls a training script needs (``ROUTES``); artifact, model, dataset-profile
  and trace uploads are refused, because MLflow's own limits are no exfiltration control
  (shared/mlflow-facts.md sections 5-6);
- byte allowances for the whole submission, over all its attempts: what the run sends out, and
  what flows back in (answers are a way in for commands: a researcher can set tags from outside);
  answers are streamed, never held whole, and refused past their own cap.
Its own credentials towards MLflow are the owner's, read again when MLflow stops taking them (the
owner rotated the password mid-run), while the run goes on with the ones it was started with.

Refusals are 403/413/422 and never 5xx/408/429: MLflow's client retries those for minutes, and a
refused run should fail fast. This module has no Django imports so it can be tested alone. The
rules are in runner.gateway_policy; this module is one cohesive thing, the server that applies
them: its socket, its lifecycle and the path of one request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import dataclasses
import hmac
import json
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from yarl import URL

from tracking.contract import SUBMISSION_TAG

from .gateway_policy import (
    EXPORT_MESSAGE,
    FORWARDED_REQUEST_HEADERS,
    MAX_BODY_BYTES,
    MAX_REFUSALS_KEPT,
    REFUSAL_MESSAGES,
    ROUTES,
    GatewayPolicy,
    GatewayStats,
    Refused,
    basic_auth,
    denied,
    exhausted,
    json_error,
    json_object,
    refuse_submission_tag_changes,
)

__all__ = ["EXPORT_MESSAGE", "GatewayPolicy", "GatewayStats", "Refused", "TrackingGateway"]

log = logging.getLogger(__name__)

UPSTREAM_TIMEOUT_S = 30.0


class TrackingGateway:
    def __init__(
        self,
        socket_path: str | Path,
        upstream_url: str,
        policy: GatewayPolicy,
        socket_uid: int | None = None,
        socket_mode: int = 0o600,
        current_password: Callable[[], str] | None = None,
        used: GatewayStats | None = None,
        on_usage: Callable[[GatewayStats], None] | None = None,
    ):
        self.socket_path = Path(socket_path)
        self.upstream = URL(upstream_url.rstrip("/"))
        self.policy = policy
        self.socket_uid = socket_uid
        self.socket_mode = socket_mode
        # An adopted or requeued run goes on from what its earlier attempts used.
        self._stats = dataclasses.replace(used, refusals=[]) if used is not None else GatewayStats()
        # Told the totals (blocking, off the loop) about once a second while they change, and at
        # stop, so that a worker that dies mid-run loses at most a second of metering.
        self._on_usage = on_usage
        self._usage_task: asyncio.Task | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        # (st_dev, st_ino) of the socket we made: stop() removes that one and nothing else.
        self._socket_id: tuple[int, int] | None = None
        # What the run must present (the credentials it was started with) ...
        self._credentials = f"{policy.username}:{policy.password}".encode()
        # ... and what MLflow is shown: the owner's password now, read again through
        # `current_password` (a blocking call, run off the loop) when MLflow answers 401.
        self._upstream_password = policy.password
        self._upstream_auth = basic_auth(policy.username, policy.password)
        self._current_password = current_password

    # ----- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("gateway already started")
        sock = self._bind_socket()
        self._loop = asyncio.new_event_loop()
        # The loop's thread starts from the caller's context, so log lines carry its submission id.
        self._thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._loop.run_forever,),
            name=f"gateway-{self.policy.submission_id}",
            daemon=True,
        )
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(sock), self._loop).result(timeout=10)
        except BaseException:
            sock.close()
            self.stop()
            raise

    def stop(self) -> GatewayStats:
        loop, thread = self._loop, self._thread
        self._loop = None
        if loop is not None and thread is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
            except Exception:
                log.exception("gateway %s: unclean shutdown", self.policy.submission_id)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            if not thread.is_alive():
                loop.close()
        self._remove_socket_file()
        stats = self.stats
        self._report_usage(stats)
        return stats

    def _report_usage(self, stats: GatewayStats) -> None:
        if self._on_usage is None:
            return
        try:
            self._on_usage(stats)
        except Exception:
            log.exception("gateway %s: could not record its totals", self.policy.submission_id)

    async def _report_usage_every_second(self) -> None:
        reported = None
        while True:
            await asyncio.sleep(1.0)
            stats = self.stats
            now = (stats.calls, stats.bytes_in, stats.bytes_out)
            if now != reported:
                await asyncio.get_running_loop().run_in_executor(None, self._report_usage, stats)
                reported = now

    @property
    def stats(self) -> GatewayStats:
        with self._lock:
            return dataclasses.replace(self._stats, refusals=list(self._stats.refusals))

    def _bind_socket(self) -> socket.socket:
        path = str(self.socket_path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            # A link here could make us chown/chmod (or unlink) some other file.
            if stat.S_ISLNK(st.st_mode):
                raise RuntimeError(f"refusing to use {path}: it is a symbolic link")
            if not stat.S_ISSOCK(st.st_mode):
                raise FileExistsError(f"refusing to replace {path}: it is not a socket")
            os.unlink(path)  # left behind by a killed gateway
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            # Set owner and mode before listen(), so nobody connects through a wider mode, and
            # through an O_PATH handle, so a link swapped in after bind() is never followed.
            fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
            try:
                st = os.fstat(fd)
                if not stat.S_ISSOCK(st.st_mode):
                    raise RuntimeError(f"{path} was replaced while starting")
                os.chmod(f"/proc/self/fd/{fd}", self.socket_mode)
                if self.socket_uid is not None:
                    os.chown(f"/proc/self/fd/{fd}", self.socket_uid, -1)
            finally:
                os.close(fd)
            self._socket_id = (st.st_dev, st.st_ino)
        except BaseException:
            sock.close()
            raise
        return sock

    def _remove_socket_file(self) -> None:
        try:
            st = os.lstat(self.socket_path)
        except FileNotFoundError:
            return
        if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == self._socket_id:
            os.unlink(self.socket_path)

    async def _serve(self, sock: socket.socket) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT_S),
            cookie_jar=aiohttp.DummyCookieJar(),  # never carry MLflow's cookies between requests
            trust_env=False,  # no proxy from the environment: MLflow is reached directly
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        if self._on_usage is not None:
            self._usage_task = asyncio.get_running_loop().create_task(self._report_usage_every_second())

    async def _shutdown(self) -> None:
        if self._usage_task is not None:
            self._usage_task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # ----- one request -----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.rel_url.raw_path
        try:
            with self._lock:
                self._stats.calls += 1
                calls = self._stats.calls
            if calls > self.policy.max_calls:
                raise exhausted(f"This run has made its allowance of {self.policy.max_calls} tracking calls.")
            kind = ROUTES.get((method, path))
            if kind is None:
                raise denied(self._refusal_message(method, path))
            self._check_credentials(request)
            query = request.rel_url.query
            own_name = [self.policy.experiment_name]
            if kind == "own_experiment" and query.getall("experiment_name", []) != own_name:
                raise denied(f"runs may only use the experiment {self.policy.experiment_name}")
            # Read (and charged) for every method, GET included: its query string is data too.
            body = await self._read_metered_body(request)
            if method == "GET":
                body = b""  # MLflow reads GET parameters from the query only
            if kind == "tag_run":
                body = self._add_submission_tag(body)
            if kind == "guard_tag":
                refuse_submission_tag_changes(body)
            with self._lock:
                if self._stats.bytes_out >= self.policy.max_bytes_in:
                    raise self._answers_refusal()
            return await self._forward(request, path, body, kind != "no_auth")
        except Refused as refusal:
            with self._lock:
                self._stats.refused += 1
                if len(self._stats.refusals) < MAX_REFUSALS_KEPT:
                    self._stats.refusals.append(f"{method} {path[:200]}: {refusal.message}")
            return json_error(refusal.status, refusal.error_code, refusal.message)

    def _refusal_message(self, method: str, path: str) -> str:
        for pattern, message in REFUSAL_MESSAGES:
            if pattern.search(path):
                return message.format(experiment=self.policy.experiment_name)
        return f"{method} {path[:200]} is not available from runs."

    def _check_credentials(self, request: web.Request) -> None:
        headers = request.headers.getall("Authorization", [])
        if not headers:
            return  # injected on the way out
        if len(headers) == 1:
            scheme, _, encoded = headers[0].strip().partition(" ")
            if scheme.lower() == "basic":
                try:
                    given = base64.b64decode(encoded.strip(), validate=True)
                except (binascii.Error, ValueError):
                    given = b""
                if hmac.compare_digest(given, self._credentials):
                    return
        raise denied(f"This run may only use its owner's MLflow credentials ({self.policy.username}).")

    def _allowance_refusal(self) -> Refused:
        if self.policy.budget_limited:
            return exhausted(
                "Your exit budget (what all your runs together may send out in 24 hours) is spent; "
                "this run goes on, but can log nothing more to MLflow. The budget frees up as the "
                "day's usage ages out; the submission page shows what is left."
            )
        return exhausted(
            f"This run has sent its tracking allowance of {self.policy.max_bytes} bytes; "
            "log fewer or smaller metrics/params."
        )

    def _answers_refusal(self) -> Refused:
        return exhausted(
            f"This run has read its allowance of {self.policy.max_bytes_in} bytes of tracking answers; "
            "read back less from MLflow (the run goes on)."
        )

    async def _read_metered_body(self, request: web.Request) -> bytes:
        """Read the body, refusing it once it passes the per-request or the run's allowance.

        The head is charged too, so a run cannot move data in query strings for free.
        """
        head = len(request.method) + len(request.raw_path) + 11  # "M /p HTTP/1.1\r\n"
        head += sum(len(k) + len(v) + 4 for k, v in request.raw_headers) + 2
        with self._lock:
            used = self._stats.bytes_in
        remaining = self.policy.max_bytes - used - head
        if remaining < 0:
            raise self._allowance_refusal()
        limit = min(MAX_BODY_BYTES, remaining)
        too_big = self._allowance_refusal()
        if remaining >= MAX_BODY_BYTES:
            too_big = exhausted(f"A tracking request may carry at most {MAX_BODY_BYTES} bytes.")
        # Refuse on the declared length before reading anything, then enforce while streaming
        # (chunked bodies, lying lengths).
        if request.content_length is not None and request.content_length > limit:
            raise too_big
        chunks, size = [], 0
        try:
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise too_big
                chunks.append(chunk)
        except Refused:
            raise
        except Exception as exc:  # broken chunking, client gone: the run's fault
            raise Refused(422, "MALFORMED_REQUEST", f"unreadable request body ({exc})") from exc
        with self._lock:
            # Charged before forwarding (no await in between), so concurrent requests cannot
            # both squeeze through the same remaining allowance.
            if self._stats.bytes_in + head + size > self.policy.max_bytes:
                raise self._allowance_refusal()
            self._stats.bytes_in += head + size
        return b"".join(chunks)

    def _add_submission_tag(self, body: bytes) -> bytes:
        """Tag every run with its submission, so the platform can find a submission's runs."""
        message = json_object(body)
        if not isinstance(message.get("tags", []), list):
            raise Refused(422, "INVALID_PARAMETER_VALUE", "tags must be a list")
        tags = [
            tag
            for tag in message.get("tags", [])
            # A run may not pose as another submission.
            if not (isinstance(tag, dict) and tag.get("key") == SUBMISSION_TAG)
        ]
        tags.append({"key": SUBMISSION_TAG, "value": str(self.policy.submission_id)})
        message["tags"] = tags
        # user_id is client-supplied and shown as the run's user; the owner is known here.
        message["user_id"] = self.policy.username
        return json.dumps(message).encode("utf-8")

    async def _forward(
        self, request: web.Request, path: str, body: bytes, with_credentials: bool
    ) -> web.StreamResponse:
        headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
        # MLflow rejects Host names it does not know (DNS-rebinding check), e.g. mlflow-server:3001.
        headers["Host"] = self.upstream.host_port_subcomponent or ""
        if with_credentials:
            headers["Authorization"] = self._upstream_auth
        # Rebuilt from the parsed query, so MLflow reads exactly the values checked above.
        url = self.upstream.with_path(self.upstream.path.rstrip("/") + path)
        url = url.with_query(request.rel_url.query)
        assert self._session is not None
        upstream = None
        try:
            upstream = await self._call_upstream(request.method, url, body, headers)
            if upstream.status == 401 and with_credentials and await self._password_changed():
                upstream.release()
                headers["Authorization"] = self._upstream_auth
                upstream = await self._call_upstream(request.method, url, body, headers)
            return await self._relay(request, upstream)
        except Refused:
            raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("gateway %s: %s failed: %r", self.policy.submission_id, path, exc)
            # The one 5xx: a platform fault, which the client may retry (few retries in runs).
            return json_error(
                502,
                "TEMPORARILY_UNAVAILABLE",
                "the tracking server is unreachable (platform fault)",
            )
        finally:
            if upstream is not None:
                upstream.release()

    async def _call_upstream(self, method: str, url: URL, body: bytes, headers: dict) -> aiohttp.ClientResponse:
        assert self._session is not None
        return await self._session.request(method, url, data=body or None, headers=headers, allow_redirects=False)

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        """Stream MLflow's answer to the run, charging it as it goes; an answer that would pass the
        per-answer cap or what is left of the run's allowance is refused before a byte of it is
        sent when its length is declared, and cut off where the allowance ends when it is not."""
        with self._lock:
            left = self.policy.max_bytes_in - self._stats.bytes_out
        limit = min(self.policy.max_answer_bytes, left)
        declared = upstream.content_length
        if declared is not None and declared > limit:
            if declared > self.policy.max_answer_bytes:
                raise exhausted(
                    f"A tracking answer may carry at most {self.policy.max_answer_bytes} bytes "
                    f"into a run (this one has {declared}); ask for less at a time."
                )
            raise self._answers_refusal()
        response = web.StreamResponse(status=upstream.status)
        if upstream.content_type and "Content-Type" in upstream.headers:
            response.headers["Content-Type"] = upstream.headers["Content-Type"]
        if declared is not None:
            response.content_length = declared
        await response.prepare(request)
        sent, cut = 0, False
        async for chunk in upstream.content.iter_chunked(64 * 1024):
            with self._lock:
                # Charged before it is written, so concurrent answers cannot overdraw together.
                room = max(0, min(limit - sent, self.policy.max_bytes_in - self._stats.bytes_out))
                if len(chunk) > room:
                    chunk, cut = chunk[:room], True
                self._stats.bytes_out += len(chunk)
            if chunk:
                await response.write(chunk)
                sent += len(chunk)
            if cut:
                log.info("gateway %s: an answer was cut at the run's allowance", self.policy.submission_id)
                if request.transport is not None:
                    request.transport.close()
                return response
        await response.write_eof()
        return response

    async def _password_changed(self) -> bool:
        """Read the owner's password again; True when it is not the one just refused."""
        if self._current_password is None:
            return False
        try:
            password = await asyncio.get_running_loop().run_in_executor(None, self._current_password)
        except Exception:
            log.exception("gateway %s: could not read the owner's MLflow password", self.policy.submission_id)
            return False
        if not password or password == self._upstream_password:
            return False
        log.info("gateway %s: the owner's MLflow password changed; using the new one", self.policy.submission_id)
        self._upstream_password = password
        self._upstream_auth = basic_auth(self.policy.username, password)
        return True
