"""P8 beside MLflow: `mlflow models serve --env-manager local` serving the very same released sklearn
folder (the training run saved it in MLflow's format too), in a container of the runtime image,
since MLflow lives there and not in the platform's own environment."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import requests
from common import free_port
from django.conf import settings

CONTAINER = f"m2d-{os.environ.get('M2D_STACK', 'bench')}-mlflow-serve"


def serve(folder, workers: int) -> tuple[str, float]:
    """Start `mlflow models serve --env-manager local` on the folder; (URL, seconds to /ping 200)."""
    subprocess.run(["docker", "rm", "-f", CONTAINER], capture_output=True)
    port = free_port()
    image = os.environ.get("M2D_RUNTIME_IMAGE", "m2d-runtime:latest")
    cpus = min(settings.M2D_SERVE_CPUS * workers, float(os.cpu_count() or 1))
    started = time.monotonic()
    out = subprocess.run(
        ["docker", "run", "-d", "--name", CONTAINER, "--user", "1000", "--cpus", str(cpus),
         "-p", f"127.0.0.1:{port}:5000", "-v", f"{folder}:/opt/m2d/model:ro", "-e", "MLFLOW_DISABLE_TELEMETRY=true",
         image, "mlflow", "models", "serve", "-m", "/opt/m2d/model", "--env-manager", "local",
         "-h", "0.0.0.0", "-p", "5000", "-w", str(workers)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"mlflow models serve did not start: {out.stderr[-500:]}")
    url = f"http://127.0.0.1:{port}"
    deadline = started + 300
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return url, time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.05)
    logs = subprocess.run(["docker", "logs", "--tail", "30", CONTAINER], capture_output=True, text=True)
    raise RuntimeError(f"mlflow models serve was not ready in 300 s: {(logs.stdout + logs.stderr)[-800:]}")


def figures(folder, sample: list, warm_n: int, throughput) -> dict:
    """{"cold": [s], "warm": [s], "tput": {workers: throughput(call)}} with 1 and 4 workers."""
    facts: dict = {"cold": [], "warm": [], "tput": {}}
    try:
        for workers in (1, 4):
            url, cold = serve(folder, workers)
            facts["cold"].append(cold)
            session = requests.Session()
            body = {"inputs": sample}

            def invoke(session=session, url=url, body=body) -> None:
                answer = session.post(f"{url}/invocations", json=body, timeout=60)
                if answer.status_code != 200:
                    raise RuntimeError(answer.text[:300])

            if workers == 1:
                for _ in range(3):
                    invoke()
                for _ in range(warm_n):
                    started = time.perf_counter()
                    invoke()
                    facts["warm"].append(time.perf_counter() - started)

            local = threading.local()

            def threaded(url=url, body=body, local=local) -> None:
                if not hasattr(local, "session"):
                    local.session = requests.Session()
                answer = local.session.post(f"{url}/invocations", json=body, timeout=60)
                if answer.status_code != 200:
                    raise RuntimeError(answer.text[:300])

            facts["tput"][workers] = throughput(threaded)
    finally:
        subprocess.run(["docker", "rm", "-f", CONTAINER], capture_output=True)
    return facts
