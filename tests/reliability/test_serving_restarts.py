"""Serving through a restart of the Docker engine: predictions keep being answered, a worker whose
start the restart cut short is replaced once, and no container or socket folder is left that the
platform does not count."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from django.conf import settings as django_settings

from modelstore.services import model_register
from runner import docker_api
from runner import serving as agent
from serving.services import deployment_scale
from tests.conftest import WorkerPool, _worker_database_url, free_port
from tests.integration.serving.conftest import npy, ready
from tests.reliability.test_crashes import restart_docker_engine, wait_until
from tests.reliability.test_restarts import start_web

pytestmark = [pytest.mark.docker, pytest.mark.services]
pytest_plugins = ["tests.serving_fixtures"]  # a released toy model with one ready worker on this engine


def labelled() -> list[str]:
    """Every serving container of this instance the engine has, running or not."""
    return sorted(docker_api.serve_workers_labelled({docker_api.LABEL_INSTANCE: django_settings.M2D_INSTANCE}))


def running(name: str) -> bool:
    return docker_api.serve_worker_state(name).status == "running"


def socket_folders(settings) -> list[str]:
    folder = settings.M2D_SERVE_DIR / "w"
    return sorted(agent.worker_name(int(f.name)) for f in folder.iterdir()) if folder.is_dir() else []


def live_restore() -> bool:
    info = subprocess.run(["docker", "info", "--format", "{{.LiveRestoreEnabled}}"], capture_output=True, text=True)
    return info.stdout.strip() == "true"


@pytest.mark.skipif(not Path("/proc").exists() or os.geteuid() != 0, reason="needs to restart the host's engine")
def test_a_docker_restart_keeps_predictions_answered_and_leaves_no_duplicates_or_orphans(
    deployed, settings, smtp_server, api
):
    version, deployment, owner = deployed
    settings.M2D_SERVE_STARTUP_TIMEOUT = 60
    overrides = {
        "M2D_RECONCILE_SECONDS": 1,
        "M2D_EXPORT_STORAGE": "local",
        "M2D_EXPORT_ROOT": settings.M2D_EXPORT_ROOT,
        "M2D_MODEL_STORE_ROOT": settings.STORAGES["models"]["OPTIONS"]["location"],
        "M2D_SERVE_DIR": settings.M2D_SERVE_DIR,
        "M2D_SERVE_STARTUP_TIMEOUT": 60,
        "M2D_SERVE_RESTART_BACKOFF": 1,
    }
    pool = WorkerPool(smtp_server.port, prefix="serve-restart-", overrides=overrides, roles=("ops",)).start()
    pool.start_beat()
    pool.use(settings)
    token = api(owner, scopes=["predict"])._credentials["HTTP_AUTHORIZATION"]
    port = free_port()
    web = start_web(
        port,
        {
            **os.environ,
            "DATABASE_URL": _worker_database_url(),
            **{key: str(value) for key, value in overrides.items()},
            "M2D_PREDICT_RATE": "100000/min",
        },
    )
    answers, stop = [], threading.Event()

    def stream():
        with requests.Session() as http:
            while not stop.is_set():
                try:
                    answer = http.post(
                        f"http://127.0.0.1:{port}/predictions/toy-scoring",
                        data=npy(np.full((2, 2), 4, np.uint8)),
                        headers={"Authorization": token, "Content-Type": "application/x-npy"},
                        timeout=30,
                    )
                    answers.append((time.monotonic(), answer.status_code))
                except requests.RequestException:
                    answers.append((time.monotonic(), 0))
                time.sleep(0.05)

    streamer = threading.Thread(target=stream)
    slow = model_register(by=owner, submission=version.submission, paths=["slow/"], name="toy-slow")  # loads in 4 s
    slow_deployment = deployment_scale(by=owner, version=slow, min_workers=1)
    [kept] = ready(deployment)
    try:
        streamer.start()
        wait_until(lambda: slow_deployment.workers.filter(state="starting").exists(), 60, "a worker to start")
        cut_short = slow_deployment.workers.get(state="starting")
        wait_until(lambda: agent.worker_name(cut_short.pk) in labelled(), 30, "its container")

        restarted_at = time.monotonic()
        restart_docker_engine()  # while the reconciler waits for the slow model to load
        docker_api.client.cache_clear()
        engine_back = time.monotonic() - restarted_at

        def settled() -> bool:
            workers = ready(deployment) + ready(slow_deployment)
            expected = sorted(agent.worker_name(w.pk) for w in workers)
            return (
                len(workers) == 2
                and labelled() == expected
                and all(running(name) for name in expected)
                and socket_folders(settings) == expected
            )

        wait_until(settled, 120, "one ready worker per deployment, and nothing else")
        recovered = time.monotonic() - restarted_at
        time.sleep(3)  # three more reconciler periods change nothing
        assert settled()
        [slow_worker] = ready(slow_deployment)
        assert slow_deployment.workers.count() <= 2  # at most the one cut short, and its one replacement
        if slow_worker.pk != cut_short.pk:
            cut_short.refresh_from_db()
            assert cut_short.state == "failed", cut_short.reason
        if live_restore():  # the engine kept its containers running through the restart
            assert ready(deployment) == [kept]
    finally:
        stop.set()
        if streamer.is_alive():
            streamer.join()
        os.killpg(web.pid, signal.SIGKILL)
        pool.stop()
        settings.M2D_QUEUE_OPS = "serving-tests-reconcile-by-hand"
        deployment_scale(by=owner, version=slow, min_workers=0, max_workers=0)
        agent.reconcile()

    during = [code for at, code in answers if restarted_at <= at <= restarted_at + engine_back]
    assert during and during == [200] * len(during), during  # the gateway needs no engine to ask a worker
    assert [code for at, code in answers if at > restarted_at + recovered][-5:] == [200] * 5
    ok = [at for at, code in answers if code == 200]
    longest = max((b - a for a, b in zip(ok, ok[1:], strict=False)), default=0.0)
    print(
        f"\ndocker restart: engine back in {engine_back:.1f} s; {during.count(200)} of {len(during)} predictions "
        f"answered meanwhile (longest gap {longest:.2f} s); settled in {recovered:.1f} s, "
        f"{'the same' if slow_worker.pk == cut_short.pk else 'a fresh'} worker for the model that was loading"
    )
