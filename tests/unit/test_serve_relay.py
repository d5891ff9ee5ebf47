"""The serving relay's own rules, on its WSGI application: what it refuses before any worker is
asked (unsigned, forged, stale, other paths and methods, oversized bodies)."""

from __future__ import annotations

import io
import json
import time

import pytest

from serving.relay import application, signature

SECRET = "s" * 40


def call(method: str, path: str, body: bytes = b"", headers: dict | None = None, length: str | None = None):
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(body)) if length is None else length,
        "wsgi.input": io.BytesIO(body),
        "REMOTE_ADDR": "127.0.0.1",
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in (headers or {}).items()},
    }
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    answer = json.loads(b"".join(application(environ, start_response)))
    return seen["status"], seen["headers"], answer


def signed(method: str, path: str, body: bytes, secret: str = SECRET, at: int | None = None) -> dict:
    stamp = str(int(time.time()) if at is None else at)
    return {"X-M2D-Time": stamp, "X-M2D-Signature": signature(secret, method, path, stamp, body)}


@pytest.fixture(autouse=True)
def relay_settings(settings, tmp_path):
    settings.M2D_SERVE_RELAY_SECRET = SECRET
    settings.M2D_SERVE_DIR = tmp_path


def test_only_a_fresh_request_signed_with_the_shared_secret_reaches_a_worker():
    path, body = "/workers/7/predict", b'{"inputs": {}}'
    assert call("POST", path, body)[0] == 401
    assert call("POST", path, body, signed("POST", path, body, secret="another secret" * 3))[0] == 401
    assert call("POST", path, body, signed("POST", path, body, at=int(time.time()) - 120))[0] == 401
    # signed for another body, another path or another method: refused
    assert call("POST", path, b'{"inputs": {"x": 1}}', signed("POST", path, body))[0] == 401
    assert call("POST", "/workers/8/predict", body, signed("POST", path, body))[0] == 401
    # well signed: the relay asks the worker, which this host does not have
    status, headers, answer = call("POST", path, body, signed("POST", path, body))
    assert (status, headers["X-M2D-Relay"]) == (502, "unreachable")
    assert "no socket" in answer["error"]


def test_a_relay_without_a_secret_serves_nobody(settings):
    settings.M2D_SERVE_RELAY_SECRET = ""
    path = "/workers/7/ready"
    status, _, answer = call("GET", path, b"", signed("GET", path, b"", secret=""))
    assert status == 401 and "serves nobody" in answer["error"]


@pytest.mark.parametrize(
    "method,path,status",
    [
        ("GET", "/workers/7/predict", 405),
        ("POST", "/workers/7/ready", 405),
        ("POST", "/workers/0/predict", 404),
        ("POST", "/workers/7/../../docker.sock", 404),
        ("POST", "/workers/7/shutdown", 404),
        ("GET", "/", 404),
    ],
)
def test_no_other_path_or_method(method, path, status):
    assert call(method, path)[0] == status


def test_a_body_over_the_serving_limit_is_refused_unread(settings):
    settings.M2D_SERVE_MAX_BODY = 1000
    status, _, answer = call("POST", "/workers/7/predict", b"", length=str(10**9))
    assert status == 413 and "over the serving body limit" in answer["error"]


def test_the_health_path_says_nothing_but_that_it_runs():
    assert call("GET", "/health")[::2] == (200, {"ok": True})


def test_a_host_gone_from_the_network_costs_one_short_wait_then_is_asked_last():
    """A relay whose host takes no connection (here: a listening socket whose backlog is full, so
    the kernel drops further connection requests as a cut cable would)."""
    import socket

    from serving.relay import CONNECT_SECONDS, RelayUnreachable, ask_remote, cut_off_lately

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)
    port = silent.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the backlog: nothing accepts
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        url = f"http://127.0.0.1:{port}"
        assert not cut_off_lately(url)
        started = time.monotonic()
        with pytest.raises(RelayUnreachable, match="cannot be reached"):
            ask_remote(url, 7, "predict", {"inputs": {}}, timeout=120, max_answer=1000)
        waited = time.monotonic() - started
        assert CONNECT_SECONDS - 0.5 < waited < CONNECT_SECONDS + 5  # not the 120 s response timeout
        assert cut_off_lately(url)
    finally:
        for filler in fillers:
            filler.close()
        silent.close()
