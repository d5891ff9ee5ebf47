"""A serving worker on another host answers through that host's relay (m2d.relay_wsgi, a real
gunicorn): the gateway here cannot see the other host's serving folder, signs each request, and
keeps the sandbox's promises across the hop. The other host is a second reconciler under another
M2D_HOST_NAME with a serving folder of its own, beside its relay, as a serving host would run."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from hosts.models import Host
from hosts.services import host_drain, host_undrain
from runner import serving as agent
from serving.models import Prediction
from serving.relay import signature
from serving.services import deployment_scale
from submissions.queue import host_name
from tests.conftest import REPO, free_port
from tests.integration.serving.conftest import npy, png
from tests.reliability.test_crashes import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.services]

SECRET = "relay-secret-" + "x" * 32
OTHER = "serving-host-b"


class OtherHost:
    """Host B: its serving folder, which the gateway here does not mount, and its relay."""

    def __init__(self, folder: Path, tls: dict[str, str] | None = None):
        self.folder, self.port, self.tls = folder, free_port(), tls or {}
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.relay: subprocess.Popen | None = None

    def start_relay(self) -> None:
        env = {
            **os.environ,
            "M2D_SERVE_DIR": str(self.folder),
            "M2D_SERVE_RELAY_SECRET": SECRET,
            "M2D_SERVE_RESPONSE_TIMEOUT": "3",
            "M2D_WEB_BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": "1",
            "M2D_WEB_THREADS": "4",
            **self.tls,
        }
        self.relay = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "--config",
                "platform/app/gunicorn.conf.py",
                "m2d.relay_wsgi",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self._answers, 30, "the relay to start")

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=2, verify=False).status_code == 200
        except requests.RequestException:
            return False

    def kill_relay(self) -> None:
        os.killpg(self.relay.pid, signal.SIGKILL)
        self.relay.wait(timeout=30)


@pytest.fixture
def relay_tls():
    """No TLS between the hosts; a test module overrides this fixture for TLS."""


@pytest.fixture
def host_b(deployed, settings, relay_tls):
    host = OtherHost(Path(f"/tmp/m2d-serve-b-{os.getpid()}"), relay_tls)
    host.start_relay()
    settings.M2D_SERVE_RELAY_SECRET = SECRET  # the gateway's copy of the shared secret
    yield host
    with contextlib.suppress(ProcessLookupError):
        host.kill_relay()
    shutil.rmtree(host.folder, ignore_errors=True)


@contextlib.contextmanager
def as_host_b(settings, host: OtherHost):
    """This process as host B's serving agent, then back to the gateway's host."""
    here = (settings.M2D_HOST_NAME, settings.M2D_SERVE_DIR, settings.M2D_SERVE_RELAY_URL)
    settings.M2D_HOST_NAME, settings.M2D_SERVE_DIR, settings.M2D_SERVE_RELAY_URL = OTHER, host.folder, host.url
    try:
        yield
    finally:
        settings.M2D_HOST_NAME, settings.M2D_SERVE_DIR, settings.M2D_SERVE_RELAY_URL = here


@pytest.fixture
def on_b(deployed, host_b, settings):
    """The deployment's one worker moved to host B: host A drained, B starts the replacement, A
    stops its own. Undone at the end: B's worker stopped by B, A taking work again."""
    version, deployment, owner = deployed
    here = host_name()
    host_drain(by=owner, host=Host.objects.get(name=here))
    with as_host_b(settings, host_b):
        agent.reconcile()
    agent.reconcile()
    [worker] = deployment.workers.filter(state="ready")
    assert (worker.host, worker.relay) == (OTHER, host_b.url)
    yield worker
    deployment_scale(by=owner, version=version, min_workers=0, max_workers=0)
    with as_host_b(settings, host_b):
        agent.reconcile()
    host_undrain(by=owner, host=Host.objects.get(name=here))


def test_a_worker_on_another_host_answers_through_its_relay_and_only_for_the_gateway(
    deployed, api, host_b, on_b, settings
):
    version, deployment, owner = deployed
    caller = api(owner, scopes=["predict"])
    # The worker's socket is in B's serving folder only: the gateway here could not open it itself.
    assert (host_b.folder / "w" / str(on_b.pk) / "worker.sock").exists()
    assert not (settings.M2D_SERVE_DIR / "w" / str(on_b.pk)).exists()

    answer = caller.post("/predictions/toy-scoring", data=png([[10, 20], [30, 40]]), content_type="image/png")
    assert answer.status_code == 200, answer.content
    assert answer.json()["score"] == pytest.approx(50.0)  # mean 25 times the weight 2
    assert Prediction.objects.get(status=200).worker_id == on_b.pk
    v2 = caller.post(
        "/v2/models/toy-scoring/infer",
        data={
            "inputs": [
                {
                    "name": "view",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": [base64.b64encode(npy(np.full((4, 4), 3, np.uint8))).decode()],
                    "parameters": {"content_type": "application/x-npy"},
                }
            ]
        },
        format="json",
    )
    assert v2.status_code == 200, v2.content
    assert {o["name"]: o["data"] for o in v2.json()["outputs"]}["score"] == [pytest.approx(6.0)]

    # Nobody but the gateway gets an answer from the relay: unsigned, forged and replayed requests.
    path = f"/workers/{on_b.pk}/predict"
    body = json.dumps({"inputs": {}, "parameters": {}}).encode()
    unsigned = requests.post(host_b.url + path, data=body, timeout=10)
    at = str(int(time.time()))
    forged = requests.post(
        host_b.url + path,
        data=body,
        headers={"X-M2D-Time": at, "X-M2D-Signature": signature("a guess" * 6, "POST", path, at, body)},
        timeout=10,
    )
    old = str(int(time.time()) - 120)
    replayed = requests.post(
        host_b.url + path,
        data=body,
        headers={"X-M2D-Time": old, "X-M2D-Signature": signature(SECRET, "POST", path, old, body)},
        timeout=10,
    )
    assert [r.status_code for r in (unsigned, forged, replayed)] == [401, 401, 401]
    assert "not signed" in unsigned.json()["error"]
    assert "signature is wrong" in forged.json()["error"]
    assert "too far" in replayed.json()["error"]
    assert requests.get(f"{host_b.url}/workers/{on_b.pk}/../../etc", timeout=10).status_code == 404

    # Host B cut off: the model is unanswered for now, its worker is not blamed nor replaced.
    host_b.kill_relay()
    cut = caller.post("/predictions/toy-scoring", data=png([[5]]), content_type="image/png")
    assert cut.status_code == 503 and cut["Retry-After"], cut.content
    assert f"{OTHER}, which cannot be reached" in cut.json()["message"]
    on_b.refresh_from_db()
    assert on_b.state == "ready"
    host_b.start_relay()
    again = caller.post("/predictions/toy-scoring", data=png([[5]]), content_type="image/png")
    assert again.status_code == 200 and again.json()["score"] == pytest.approx(10.0)


def test_the_sandbox_holds_across_the_relay(deployed, api, host_b, on_b, settings):
    """A model that swaps its socket for a link to the Docker socket, or hangs, is refused and
    recycled on host B exactly as on the gateway's own host."""
    version, deployment, owner = deployed
    caller = api(owner, scopes=["predict"])
    swap = caller.post(
        "/predictions/toy-scoring", data=npy(np.full((2, 2), 2, np.uint8)), content_type="application/x-npy"
    )
    assert swap.status_code == 200
    assert (host_b.folder / "w" / str(on_b.pk) / "worker.sock").is_symlink()
    refused = caller.post("/predictions/toy-scoring", data=png([[5]]), content_type="image/png")
    assert refused.status_code == 502 and "replaced" in refused.json()["message"], refused.content
    on_b.refresh_from_db()
    assert on_b.state == "failed" and "refused" in on_b.reason

    with as_host_b(settings, host_b):
        agent.reconcile()  # B replaces its worker
    [fresh] = deployment.workers.filter(state="ready")
    assert fresh.host == OTHER and fresh.pk != on_b.pk
    started = time.monotonic()
    hang = caller.post(
        "/predictions/toy-scoring", data=npy(np.ones((2, 2), np.uint8)), content_type="application/x-npy"
    )
    assert hang.status_code == 504, hang.content
    assert 3.0 <= time.monotonic() - started < 8.0  # the worker's response timeout, applied on host B
    fresh.refresh_from_db()
    assert fresh.state == "failed" and "did not answer within 3 s" in fresh.reason
    with as_host_b(settings, host_b):
        agent.reconcile()
    assert deployment.workers.filter(state="ready", host=OTHER).count() == 1
