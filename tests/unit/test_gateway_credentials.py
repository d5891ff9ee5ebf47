"""The gateway's credentials towards MLflow follow the owner's password when it is rotated mid-run,
while the run keeps presenting the one it was started with."""

from __future__ import annotations

import pytest
import requests
from aiohttp import web

from runner.gateway import GatewayPolicy, TrackingGateway
from tests.unit.test_gateway import API, BASE, OWNER, PASSWORD, EchoUpstream, basic, unix_session


class PasswordUpstream(EchoUpstream):
    """Takes only the owner's current password, as MLflow does once a new one is set."""

    def __init__(self, password: str):
        self.password = password
        super().__init__()

    async def _echo(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != basic(OWNER, self.password):
            self.received.append({"refused": request.path})
            return web.json_response({"error_code": "UNAUTHENTICATED"}, status=401)
        return await super()._echo(request)


@pytest.fixture
def password_upstream():
    server = PasswordUpstream(PASSWORD)
    yield server
    server.close()


def password_gateway(tmp_path, upstream, current_password) -> tuple[TrackingGateway, requests.Session]:
    policy = GatewayPolicy(submission_id=42, username=OWNER, password=PASSWORD, experiment_name=OWNER)
    gateway = TrackingGateway(tmp_path / "gw.sock", upstream.url, policy, current_password=current_password)
    gateway.start()
    return gateway, unix_session(gateway.socket_path)


def test_a_password_rotated_mid_run_is_read_again(tmp_path, password_upstream):
    current = [PASSWORD]
    gateway, http = password_gateway(tmp_path, password_upstream, lambda: current[0])
    try:
        log_metric = lambda: http.post(BASE + API + "runs/log-metric", json={"key": "acc"}, auth=(OWNER, PASSWORD))  # noqa: E731
        assert log_metric().status_code == 200
        password_upstream.password = current[0] = "rotated-pw"  # the owner rotates it; MLflow has the new one
        # The run still presents the password it was started with; MLflow is shown the new one.
        r = log_metric()
        assert r.status_code == 200 and r.json()["headers"]["Authorization"] == basic(OWNER, "rotated-pw")
        assert log_metric().status_code == 200
        assert password_upstream.received.count({"refused": API + "runs/log-metric"}) == 1  # read once, kept
    finally:
        gateway.stop()


def test_mlflow_refusing_the_current_password_reaches_the_run_as_401(tmp_path, password_upstream):
    password_upstream.password = "one-the-platform-does-not-know"
    gateway, http = password_gateway(tmp_path, password_upstream, lambda: PASSWORD)
    try:
        r = http.post(BASE + API + "runs/log-metric", json={"key": "acc"}, auth=(OWNER, PASSWORD))
        assert r.status_code == 401
        assert len(password_upstream.received) == 1  # the same password is not tried twice
    finally:
        gateway.stop()
