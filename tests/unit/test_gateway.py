"""Unit tests of the tracking gateway's own logic (runner/gateway.py); no Django, no MLflow.

The upstream is a fake that echoes what it received: it stands in for MLflow only so these tests
can see exactly what the gateway forwards, and what it never forwards.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import stat
import threading
import time

import pytest
import requests
import urllib3
from aiohttp import web
from requests.adapters import HTTPAdapter

from runner.gateway import EXPORT_MESSAGE, GatewayPolicy, GatewayStats, TrackingGateway

OWNER, PASSWORD = "alice", "s3cret-pw"
API = "/api/2.0/mlflow/"
BASE = "http://gw"  # requests needs a host name; the adapter below ignores it


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ----- a fake upstream that records and echoes ---------------------------------------------------


class EchoUpstream:
    def __init__(self):
        self.received: list[dict] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner, self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result()
        self.url = f"http://127.0.0.1:{self.port}"

    async def _start(self):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner, runner.addresses[0][1]

    async def _echo(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("latin-1")
        seen = {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": dict(request.headers),
            "body": body,
        }
        self.received.append(seen)
        return web.json_response(seen)

    def close(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


@pytest.fixture(scope="module")
def upstream():
    server = EchoUpstream()
    yield server
    server.close()


# ----- requests over a unix socket --------------------------------------------------------------


class _UnixConnection(urllib3.connection.HTTPConnection):
    def __init__(self, *args, unix_path: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.unix_path = unix_path

    def _new_conn(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(self.unix_path)
        return sock


class _UnixPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _UnixConnection


class UnixAdapter(HTTPAdapter):
    def __init__(self, unix_path: str):
        super().__init__()
        # One pool, so connections are kept alive between requests, as MLflow's client does.
        self.pool = _UnixPool("localhost", unix_path=unix_path)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        return self.pool


def unix_session(path) -> requests.Session:
    session = requests.Session()
    session.mount(BASE, UnixAdapter(str(path)))
    return session


# ----- the gateway under test ---------------------------------------------------------------------


@pytest.fixture
def make_gateway(tmp_path, upstream):
    gateways = []

    def make(upstream_url: str | None = None, **policy_fields):
        policy = GatewayPolicy(
            **{
                "submission_id": 42,
                "username": OWNER,
                "password": PASSWORD,
                "experiment_name": OWNER,
                **policy_fields,
            }
        )
        gateway = TrackingGateway(tmp_path / "gw.sock", upstream_url or upstream.url, policy)
        gateway.start()
        gateways.append(gateway)
        return gateway, unix_session(gateway.socket_path)

    upstream.received.clear()
    yield make
    for gateway in gateways:
        gateway.stop()


def test_injects_credentials_rewrites_host_and_strips_headers(make_gateway, upstream):
    _, http = make_gateway()
    headers = {
        "Origin": "http://evil.example",
        "Cookie": "session=x",
        "X-Forwarded-Host": "evil",
    }
    r = http.get(BASE + API + "runs/get", params={"run_id": "abc"}, headers=headers)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    seen = r.json()
    assert seen["path"] == API + "runs/get" and seen["query"] == "run_id=abc"
    assert seen["headers"]["Authorization"] == basic(OWNER, PASSWORD)
    assert seen["headers"]["Host"] == f"127.0.0.1:{upstream.port}"
    for name in ("Origin", "Cookie", "X-Forwarded-Host"):
        assert name not in seen["headers"]


def test_owner_credentials_pass(make_gateway):
    _, http = make_gateway()
    r = http.post(BASE + API + "runs/log-metric", json={"key": "acc"}, auth=(OWNER, PASSWORD))
    assert r.status_code == 200
    assert r.json()["headers"]["Authorization"] == basic(OWNER, PASSWORD)
    assert r.json()["body"] == {"key": "acc"}


@pytest.mark.parametrize(
    "authorization",
    [
        basic("bob", "bobs-pw"),
        basic(OWNER, "wrong"),
        "Bearer abc.def",
        "Basic !!!notb64",
        "Basic",
    ],
    ids=["other-user", "wrong-password", "bearer", "bad-base64", "empty"],
)
def test_foreign_or_malformed_credentials_are_refused(make_gateway, upstream, authorization):
    gateway, http = make_gateway()
    r = http.get(BASE + API + "runs/get?run_id=1", headers={"Authorization": authorization})
    assert r.status_code == 403
    assert r.json() == {
        "error_code": "PERMISSION_DENIED",
        "message": f"This run may only use its owner's MLflow credentials ({OWNER}).",
    }
    assert upstream.received == []
    assert gateway.stats.refused == 1


def test_runs_create_is_tagged_with_the_submission(make_gateway):
    _, http = make_gateway()
    tags = [
        {"key": "mlflow.runName", "value": "r1"},
        {"key": "m2d.submission_id", "value": "999"},
    ]
    body = {"experiment_id": "1", "user_id": "bob", "tags": tags}
    r = http.post(BASE + API + "runs/create", json=body)
    assert r.status_code == 200
    forwarded = r.json()["body"]
    assert forwarded["tags"] == [
        {"key": "mlflow.runName", "value": "r1"},
        {"key": "m2d.submission_id", "value": "42"},
    ]
    assert forwarded["user_id"] == OWNER and forwarded["experiment_id"] == "1"

    r = http.post(BASE + API + "runs/create", data=b"[not json")
    assert r.status_code == 422


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        ("runs/set-tag", "key", "m2d.submission_id"),
        ("runs/delete-tag", "key", "m2d.submission_id"),
        ("runs/log-batch", "tags", [{"key": "m2d.submission_id", "value": "1"}]),
    ],
)
def test_the_submission_tag_cannot_be_changed(make_gateway, upstream, path, field, value):
    _, http = make_gateway()
    r = http.post(BASE + API + path, json={"run_id": "r", field: value})
    assert r.status_code == 403
    assert r.json()["message"] == "the m2d.submission_id tag is set by the platform"
    assert upstream.received == []
    other = "other" if field == "key" else [{"key": "other", "value": "1"}]
    assert http.post(BASE + API + path, json={"run_id": "r", field: other}).status_code == 200


def test_owner_experiment_and_health(make_gateway):
    _, http = make_gateway()
    r = http.get(BASE + API + "experiments/get-by-name", params={"experiment_name": OWNER})
    assert r.status_code == 200 and r.json()["query"] == f"experiment_name={OWNER}"
    r = http.get(BASE + "/health", auth=(OWNER, PASSWORD))
    assert r.status_code == 200 and "Authorization" not in r.json()["headers"]


CREATE_MESSAGE = f'experiments are provisioned by the platform; use mlflow.set_experiment("{OWNER}")'


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        (
            "POST",
            "/ajax-api/2.0/mlflow/upload-artifact?run_uuid=r&path=x",
            EXPORT_MESSAGE,
        ),
        (
            "PUT",
            "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/x.txt",
            EXPORT_MESSAGE,
        ),
        ("GET", API + "artifacts/list?run_id=r", EXPORT_MESSAGE),
        ("POST", API + "logged-models", EXPORT_MESSAGE),
        ("POST", API + "registered-models/create", EXPORT_MESSAGE),
        ("POST", API + "model-versions/create", EXPORT_MESSAGE),
        ("POST", API + "runs/log-inputs", EXPORT_MESSAGE),
        ("POST", API + "runs/outputs", EXPORT_MESSAGE),
        ("POST", "/v1/traces", EXPORT_MESSAGE),
        ("POST", "/api/3.0/mlflow/traces", EXPORT_MESSAGE),
        ("GET", API + "users/list", f"GET {API}users/list is not available from runs."),
        ("POST", "/graphql", "POST /graphql is not available from runs."),
        ("POST", API + "experiments/create", CREATE_MESSAGE),
        ("POST", API + "experiments/update", "experiments are managed by the platform"),
        (
            "POST",
            API + "experiments/set-experiment-tag",
            "experiments are managed by the platform",
        ),
        (
            "POST",
            API + "runs/delete",
            f"POST {API}runs/delete is not available from runs.",
        ),
        # Only the /api/ spelling of an allowed call, and no encoded detours.
        ("GET", "/ajax-api/2.0/mlflow/runs/get?run_id=r", None),
        ("GET", "/api/2.0/mlflow/runs%2Fget?run_id=r", None),
        (
            "GET",
            API + "experiments/get-by-name?experiment_name=bob",
            "runs may only use the experiment alice",
        ),
        (
            "GET",
            API + "experiments/get-by-name?experiment_name=alice&experiment_name=bob",
            None,
        ),
    ],
)
def test_refused_calls_never_reach_upstream(make_gateway, upstream, method, path, message):
    gateway, http = make_gateway()
    r = http.request(method, BASE + path, data=b'{"x": 1}')
    assert r.status_code == 403
    assert r.json()["error_code"] == "PERMISSION_DENIED"
    if message is not None:
        assert r.json()["message"] == message
    assert upstream.received == []
    stats = gateway.stats
    assert (stats.calls, stats.refused, stats.bytes_in, stats.bytes_out) == (1, 1, 0, 0)
    assert stats.refusals == [f"{method} {path.split('?')[0]}: {r.json()['message']}"]


def test_byte_allowance_is_enforced_and_stats_add_up(make_gateway, upstream):
    gateway, http = make_gateway(max_bytes=6000)
    statuses, delivered = [], 0
    for step in range(20):
        r = http.post(
            BASE + API + "runs/log-metric",
            json={"key": "k", "value": "v" * 300, "step": step},
        )
        statuses.append(r.status_code)
        if r.status_code == 200:
            delivered += len(r.content)
        else:
            assert r.status_code == 413
            assert r.json()["message"] == (
                "This run has sent its tracking allowance of 6000 bytes; log fewer or smaller metrics/params."
            )
    forwarded = statuses.count(200)
    assert 0 < forwarded < 20 and statuses == [200] * forwarded + [413] * (20 - forwarded)
    assert len(upstream.received) == forwarded
    stats = gateway.stats
    assert stats.calls == 20 and stats.refused == 20 - forwarded
    assert stats.bytes_out == delivered
    assert stats.bytes_in > forwarded * 300  # bodies plus request heads
    # What the run sends is capped; answers flowing into the sandbox are counted, not capped.
    assert 6000 - 600 < stats.bytes_in <= 6000  # the next request (~560 bytes) would not fit


def test_oversize_bodies_are_refused_before_upstream(make_gateway, upstream):
    gateway, http = make_gateway(max_bytes=50_000_000)
    big = b"x" * (2 * 1024 * 1024)
    r = http.post(BASE + API + "runs/log-batch", data=big)
    assert r.status_code == 413 and "at most 1048576 bytes" in r.json()["message"]
    # Chunked, so the length is only found while reading.
    r = http.post(
        BASE + API + "runs/log-batch",
        data=(big[i : i + 65536] for i in range(0, len(big), 65536)),
    )
    assert r.status_code == 413
    assert upstream.received == [] and gateway.stats.bytes_in == 0

    gateway, http = make_gateway(max_bytes=2000)
    r = http.post(BASE + API + "runs/log-batch", data=b"y" * 5000)
    assert r.status_code == 413 and "allowance of 2000 bytes" in r.json()["message"]
    assert upstream.received == []


def test_call_allowance(make_gateway, upstream):
    gateway, http = make_gateway(max_calls=3)
    codes = [http.get(BASE + API + "runs/get?run_id=1").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 413, 413]
    assert len(upstream.received) == 3 and gateway.stats.refused == 2


def test_unreachable_upstream_is_a_502(make_gateway):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    gateway, http = make_gateway(upstream_url=f"http://127.0.0.1:{dead_port}")
    r = http.get(BASE + API + "runs/get?run_id=1")
    assert r.status_code == 502
    assert r.json()["message"] == "the tracking server is unreachable (platform fault)"
    assert gateway.stats.refused == 0


def test_expect_continue_and_garbage_do_not_break_the_gateway(make_gateway, upstream):
    gateway, http = make_gateway()
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(5)
        raw.connect(str(gateway.socket_path))
        raw.sendall(b"\x00\xffGARBAGE \r\n\r\n")
        raw.recv(1000)
    body = b'{"key": "a", "value": 1}'
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(5)
        raw.connect(str(gateway.socket_path))
        raw.sendall(
            f"POST {API}runs/log-metric HTTP/1.1\r\nHost: mlflow-server:3001\r\n"
            f"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        assert raw.recv(1000).startswith(b"HTTP/1.1 100 Continue")
        raw.sendall(body)
        assert raw.recv(4000).startswith(b"HTTP/1.1 200")
    assert "Expect" not in upstream.received[-1]["headers"]
    assert http.get(BASE + "/version").status_code == 200


def test_socket_lifecycle(tmp_path, upstream):
    path = tmp_path / "gw.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # a killed gateway leaves its file behind
    stale.close()
    policy = GatewayPolicy(submission_id=7, username=OWNER, password=PASSWORD, experiment_name=OWNER)
    gateway = TrackingGateway(path, upstream.url, policy, socket_uid=os.getuid())
    gateway.start()
    try:
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        http = unix_session(path)
        # The session keeps its connection open: stop() must not wait for it.
        assert http.get(BASE + "/health").status_code == 200
        started = time.monotonic()
        stats = gateway.stop()
        assert time.monotonic() - started < 5
    finally:
        gateway.stop()
    assert isinstance(stats, GatewayStats) and stats.calls == 1 and stats.bytes_out > 0
    assert not path.exists()
    assert gateway.stop() == stats  # idempotent


def test_refuses_links_and_other_files(tmp_path, upstream):
    policy = GatewayPolicy(submission_id=7, username=OWNER, password=PASSWORD, experiment_name=OWNER)
    target = tmp_path / "precious"
    target.write_text("keep me")
    link = tmp_path / "gw.sock"
    link.symlink_to(target)
    with pytest.raises(RuntimeError, match="symbolic link"):
        TrackingGateway(link, upstream.url, policy).start()
    assert link.is_symlink() and target.read_text() == "keep me"
    with pytest.raises(FileExistsError):
        TrackingGateway(target, upstream.url, policy).start()
    assert target.read_text() == "keep me"
