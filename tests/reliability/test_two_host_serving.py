"""A serving host with an engine of its own: host B's serving agent (a real Celery worker on its own
queue, serve.beta, with DOCKER_HOST on the second engine) and its relay (a real gunicorn) serve a
model of the store, placed there when host A drains; the gateway on host A reaches the worker only
through B's relay. B builds the submission's image on its own engine from the stored zip."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from hosts.models import Host
from hosts.services import host_drain, host_undrain
from serving.models import Prediction
from serving.services import deployment_scale
from submissions.queue import host_name
from tests.conftest import REPO, _worker_database_url, free_port
from tests.integration.serving import conftest as serving
from tests.integration.serving.conftest import png
from tests.reliability.test_crashes import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.services, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

# The serving tests' fixtures: a released toy model with one ready worker on engine A.
api, approved, deployed, export_storage, finished_submission, model_files, released, serve_settings, store, users = (
    serving.api,
    serving.approved,
    serving.deployed,
    serving.export_storage,
    serving.finished_submission,
    serving.model_files,
    serving.released,
    serving.serve_settings,
    serving.store,
    serving.users,
)

SECRET = "two-host-relay-" + "y" * 32


class ServingHostB:
    """Host B's serving agent and relay, as platform/docker-compose.serving-host.yml runs them."""

    def __init__(self, engine, settings):
        self.engine = engine
        self.var = Path(django_settings.VAR_DIR) / f"serving-b-{time.monotonic_ns()}"
        self.serve_dir = Path(f"/tmp/m2d-serve-beta-{os.getpid()}")
        self.relay_port = free_port()
        self.relay_url = f"http://127.0.0.1:{self.relay_port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": _worker_database_url(),
            "PYTHONUNBUFFERED": "1",
            "DOCKER_HOST": engine.url,
            "M2D_HOST_NAME": "beta",
            "M2D_VAR_DIR": str(self.var),
            "M2D_MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
            "M2D_EXPORT_ROOT": str(settings.M2D_EXPORT_ROOT),
            "M2D_EXPORT_STORAGE": "local",
            "M2D_MODEL_STORE_ROOT": settings.STORAGES["models"]["OPTIONS"]["location"],
            "M2D_SERVE_DIR": str(self.serve_dir),
            "M2D_SERVE_RESPONSE_TIMEOUT": "3",
            "M2D_SERVE_RELAY_URL": self.relay_url,
            "M2D_SERVE_RELAY_SECRET": SECRET,
            "M2D_RECONCILE_SECONDS": "2",
            "M2D_HEARTBEAT_SECONDS": "2",
        }
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> ServingHostB:
        self.var.mkdir(parents=True)
        self.processes["agent"] = self._spawn(
            [sys.executable, "-m", "celery", "-A", "m2d", "worker", "-Q", "serve.beta", "-c", "1", "-n",
             f"serve-beta-{os.getpid()}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
            "agent.log",
        )  # fmt: skip
        self.processes["relay"] = self._spawn(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "--config",
                "platform/app/gunicorn.conf.py",
                "m2d.relay_wsgi",
            ],
            "relay.log",
            M2D_WEB_BIND=f"127.0.0.1:{self.relay_port}",
            WEB_CONCURRENCY="1",
            M2D_WEB_THREADS="4",
        )
        wait_until(lambda: Host.objects.filter(name="beta", heartbeat_at__isnull=False).exists(), 60, "B's heartbeat")
        return self

    def _spawn(self, command: list[str], log: str, **extra) -> subprocess.Popen:
        return subprocess.Popen(
            command,
            cwd=REPO,
            env={**self.env, **extra},
            stdout=(self.var / log).open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self, name: str) -> str:
        return (self.var / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(self.serve_dir, ignore_errors=True)


def timed(caller, n: int) -> float:
    """The median time of n predictions, each answered right."""
    timings = []
    for _ in range(n):
        asked = time.monotonic()
        answer = caller.post("/predictions/toy-scoring", data=png([[5]]), content_type="image/png")
        timings.append(time.monotonic() - asked)
        assert answer.status_code == 200 and answer.json()["score"] == pytest.approx(10.0), answer.content
    return sorted(timings)[n // 2]


@pytest.fixture
def host_b(deployed, engine_b, settings):
    settings.M2D_SERVE_RELAY_SECRET = SECRET  # the gateway's copy
    host = ServingHostB(engine_b, settings).start()
    yield host
    host.stop()


def test_a_model_moves_to_a_serving_host_with_its_own_engine_and_answers_through_its_relay(deployed, api, host_b):
    version, deployment, owner = deployed
    here = host_name()
    caller = api(owner, scopes=["predict"])
    [on_a] = deployment.workers.filter(state="ready")
    local = timed(caller, 10)  # through the socket here, for the figures
    try:
        started = time.monotonic()
        # A drains: B's agent, woken on its own queue, starts the replacement on engine B.
        host_drain(by=owner, host=Host.objects.get(name=here))
        wait_until(
            lambda: deployment.workers.filter(state="ready", host="beta").exists(),
            300,
            "a ready worker on host B",
        )
        moved = time.monotonic() - started
        [on_b] = deployment.workers.filter(state="ready", host="beta")
        assert on_b.relay == host_b.relay_url
        names = host_b.engine.docker("ps", "--format", "{{.Names}}").split()
        assert any(name.endswith(f"-serve-{on_b.pk}") for name in names), names
        assert Host.objects.get(name="beta").serve_relay == host_b.relay_url

        answer = caller.post("/predictions/toy-scoring", data=png([[10, 20], [30, 40]]), content_type="image/png")
        assert answer.status_code == 200, (answer.content, host_b.log("relay"))
        assert answer.json()["score"] == pytest.approx(50.0)
        assert Prediction.objects.filter(status=200).latest("at").worker_id in (on_a.pk, on_b.pk)

        # A gives its own worker up once B's is ready (its own reconcile, here in the test process).
        from runner import serving as agent

        agent.reconcile()
        on_a.refresh_from_db()
        assert on_a.state == "stopped"
        relayed = timed(caller, 10)
        assert Prediction.objects.filter(status=200, worker=on_b).count() >= 10
        print(f"moved to B in {moved:.1f} s; p50 here {local * 1000:.1f} ms, through B's relay {relayed * 1000:.1f} ms")
    finally:
        deployment_scale(by=owner, version=version, min_workers=0, max_workers=0)
        host_undrain(by=owner, host=Host.objects.get(name=here))
        wait_until(
            lambda: not deployment.workers.filter(state__in=["starting", "ready"], host="beta").exists(),
            60,
            "B's worker to stop",
        )
    names = host_b.engine.docker("ps", "-a", "--format", "{{.Names}}").split()
    assert not [name for name in names if "-serve-" in name], names
