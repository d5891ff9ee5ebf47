"""The gateway's allowances across attempts and for answers flowing into a run (runner/gateway.py).

The upstream here is a fake that answers with as many bytes as asked, with or without a declared
length, so the tests can see how much of an answer reaches the run."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import requests
from aiohttp import web

from runner.gateway import GatewayPolicy, GatewayStats, TrackingGateway
from tests.unit.test_gateway import API, BASE, OWNER, PASSWORD, unix_session


class SizedUpstream:
    """GET runs/get?size=N answers N bytes; &chunked=1 streams them without a declared length."""

    def __init__(self):
        self.calls = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner, port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result()
        self.url = f"http://127.0.0.1:{port}"

    async def _start(self):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner, runner.addresses[0][1]

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        size = int(request.query.get("size", "2"))
        if request.query.get("chunked"):
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            for start in range(0, size, 4096):
                await response.write(b"x" * min(4096, size - start))
            await response.write_eof()
            return response
        return web.Response(body=b"x" * size, content_type="application/json")

    def close(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


@pytest.fixture(scope="module")
def sized():
    server = SizedUpstream()
    yield server
    server.close()


@pytest.fixture
def gateway_for(tmp_path, sized):
    made = []

    def make(used: GatewayStats | None = None, on_usage=None, **policy_fields):
        policy = GatewayPolicy(
            submission_id=7, username=OWNER, password=PASSWORD, experiment_name=OWNER, **policy_fields
        )
        gateway = TrackingGateway(tmp_path / "gw.sock", sized.url, policy, used=used, on_usage=on_usage)
        gateway.start()
        made.append(gateway)
        return gateway, unix_session(gateway.socket_path)

    yield make
    for gateway in made:
        gateway.stop()


def get(http, size: int, chunked: bool = False):
    return http.get(BASE + API + "runs/get", params={"size": size, **({"chunked": 1} if chunked else {})})


def test_an_answer_past_its_cap_is_refused_before_a_byte_of_it_reaches_the_run(gateway_for):
    gateway, http = gateway_for(max_answer_bytes=10_000, max_bytes_in=1_000_000)
    assert len(get(http, 10_000).content) == 10_000
    refused = get(http, 10_001)
    assert refused.status_code == 413
    assert "at most 10000 bytes into a run (this one has 10001)" in refused.json()["message"]
    assert gateway.stats.bytes_out == 10_000


@pytest.mark.parametrize("chunked", [False, True])
def test_answers_stop_at_the_runs_inbound_allowance(gateway_for, sized, chunked):
    gateway, http = gateway_for(max_answer_bytes=50_000, max_bytes_in=100_000)
    received = 0
    for _ in range(10):
        try:
            r = get(http, 30_000, chunked)
        except requests.RequestException:  # an undeclared answer cut off mid-way
            continue
        if r.status_code == 200:
            received += len(r.content)
        else:
            assert r.status_code == 413 and "allowance of 100000 bytes of tracking answers" in r.json()["message"]
    assert received <= 100_000
    assert gateway.stats.bytes_out <= 100_000
    left = 100_000 - gateway.stats.bytes_out
    if left:
        assert len(get(http, left).content) == left
    # Once spent, nothing is forwarded at all.
    calls = sized.calls
    assert get(http, 10).status_code == 413 and sized.calls == calls


def test_a_later_attempt_goes_on_from_what_earlier_ones_used(gateway_for, sized):
    used = GatewayStats(calls=5, bytes_in=5_800, bytes_out=90_000)
    gateway, http = gateway_for(used=used, max_bytes=6_000, max_bytes_in=100_000)
    # 200 bytes of allowance out are left: one small call fits the heads, nothing with a body.
    r = http.post(BASE + API + "runs/log-metric", json={"key": "k", "value": 1.0, "pad": "p" * 400})
    assert r.status_code == 413 and "allowance of 6000 bytes" in r.json()["message"]
    calls = sized.calls
    r = get(http, 20_000)
    assert r.status_code == 413 and sized.calls == calls + 1  # refused on its declared length, after the call
    assert gateway.stats.calls == 7 and gateway.stats.bytes_out == 90_000


def test_a_budget_limited_allowance_says_the_budget_is_spent(gateway_for):
    gateway, http = gateway_for(max_bytes=10, budget_limited=True)
    r = http.post(BASE + API + "runs/log-metric", json={"key": "k", "value": 1.0})
    assert r.status_code == 413
    assert r.json()["message"].startswith("Your exit budget (what all your runs together may send out in 24 hours)")


def test_totals_are_reported_while_they_change_and_at_stop(gateway_for):
    reports: list[GatewayStats] = []
    gateway, http = gateway_for(on_usage=reports.append, max_bytes_in=1_000_000)
    get(http, 1000)
    deadline = time.monotonic() + 5
    while not reports and time.monotonic() < deadline:
        time.sleep(0.1)
    assert reports and reports[-1].bytes_out == 1000
    final = gateway.stop()
    assert reports[-1] == final
