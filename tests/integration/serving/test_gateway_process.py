"""A slow model never holds the portal: on the stack `make up` starts (nginx in front, the portal's
single-threaded gunicorn workers, the inference gateway's threaded gunicorn apart), more slow
predictions than the portal has workers are in flight while a page is asked for. Prints what it
measured (`make test PYTEST_ARGS="... -s"` shows it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from accounts.services import api_token_create
from serving.models import Prediction
from tests.conftest import _worker_database_url, free_port

from .conftest import CARD, png, ready

pytestmark = [pytest.mark.docker, pytest.mark.services]

REPO = Path(__file__).resolve().parents[3]
PORTAL_WORKERS = 3  # what `make up` starts on two cores: one single-threaded worker per core and one more
IN_FLIGHT = 2 * PORTAL_WORKERS
SLEEP = 8.0
PAGE_TIMEOUT = 5.0  # well under the time one prediction takes

SLOW = f"""
import time


class Model:
    def load(self, model_dir, device):
        pass

    def predict(self, inputs, parameters):
        time.sleep({SLEEP})
        return {{"score": 1.0, "sandbox": ""}}
"""


@pytest.fixture
def model_files():
    return {"model/predict.py": SLOW.encode(), "model/m2d-model.json": json.dumps(CARD).encode()}


@pytest.fixture
def serve_settings(settings):
    settings.M2D_SERVE_IN_FLIGHT = IN_FLIGHT  # one worker container takes every prediction at once


def gunicorn(port: int, workers: int, threads: int, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "--config", "platform/app/gunicorn.conf.py", "m2d.wsgi"],
        cwd=REPO,
        env={
            **env,
            "M2D_WEB_BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": str(workers),
            "M2D_WEB_THREADS": str(threads),
        },
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.fixture
def stack(deployed, settings, tmp_path):
    """The portal and the gateway as `scripts/stack.sh up` starts them, behind the nginx it writes."""
    env = {
        **os.environ,
        "DATABASE_URL": _worker_database_url(),
        "M2D_EXPORT_STORAGE": "local",
        "M2D_EXPORT_ROOT": str(settings.M2D_EXPORT_ROOT),
        "M2D_MODEL_STORE_ROOT": settings.STORAGES["models"]["OPTIONS"]["location"],
        "M2D_SERVE_DIR": str(settings.M2D_SERVE_DIR),
        "M2D_SERVE_RESPONSE_TIMEOUT": "60",
        "M2D_STACK": f"gateway-test-{os.getpid()}",
    }
    portal_port, gateway_port, front_port = free_port(), free_port(), free_port()
    processes = [
        gunicorn(portal_port, PORTAL_WORKERS, 1, env, tmp_path / "portal.log"),
        gunicorn(gateway_port, 2, 16, env, tmp_path / "gateway.log"),
    ]
    config = subprocess.run(
        ["bash", "scripts/stack.sh", "proxy-config", str(portal_port), str(gateway_port)],
        cwd=REPO,
        env={**env, "M2D_WEB_ADDR": f"127.0.0.1:{front_port}"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (tmp_path / "nginx.conf").write_text(config)
    processes.append(
        subprocess.Popen(
            ["nginx", "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "nginx-error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    )
    front = f"http://127.0.0.1:{front_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                up = [requests.get(f"{front}{path}", timeout=5).status_code for path in ("/accounts/login/", "/v2")]
                if up == [200, 401]:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the stack did not start: " + (tmp_path / "portal.log").read_text()
            time.sleep(0.3)
        yield front
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def test_slow_predictions_do_not_hold_the_portal(stack, deployed):
    version, deployment, owner = deployed
    assert len(ready(deployment)) == 1
    token = api_token_create(by=owner, scopes=["predict"]).key

    def predict():
        started = time.monotonic()
        answer = requests.post(
            f"{stack}/predictions/toy-scoring",
            data=png([[3]]),
            headers={"Authorization": f"Token {token}", "Content-Type": "image/png"},
            timeout=120,
        )
        return answer.status_code, time.monotonic() - started

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        predictions = [pool.submit(predict) for _ in range(IN_FLIGHT)]
        time.sleep(2)  # every prediction is in its model's hands by now
        assert not any(p.done() for p in predictions)
        pages = []
        for _ in range(3):
            started = time.monotonic()
            page = requests.get(f"{stack}/accounts/login/", timeout=PAGE_TIMEOUT)
            pages.append(time.monotonic() - started)
            assert page.status_code == 200
        answers = [p.result() for p in predictions]

    print(
        f"\nsign-in page with {IN_FLIGHT} predictions of a {SLEEP:g} s model in flight "
        f"({PORTAL_WORKERS} portal workers): {', '.join(f'{s:.2f} s' for s in pages)}; "
        f"predictions answered in {min(s for _, s in answers):.1f}-{max(s for _, s in answers):.1f} s"
    )
    assert [status for status, _ in answers] == [200] * IN_FLIGHT
    assert Prediction.objects.filter(model_name="toy-scoring", status=200).count() == IN_FLIGHT
