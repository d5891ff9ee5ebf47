"""The researcher's local serving dry run: `docker-compose --profile serve up serve-port` serves a
model folder with the platform's own server, sealed as a platform serving worker, and answers the
gateway's /predictions and V2 shapes on a local port."""

import base64
import io
import json
import os
import subprocess
import time

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import REPO, free_port
from tests.integration.test_dry_run import CPU_FILE, compose_config, defaults_env

PREDICT = """
import os

import numpy as np


class Model:
    def load(self, model_dir, device):
        self.weight = float(open(os.path.join(model_dir, "weight.txt")).read())

    def predict(self, inputs, parameters):
        seen = ",".join(sorted(os.listdir("/sys/class/net")))
        return {"score": float(np.asarray(inputs["view"]).mean()) * self.weight, "interfaces": seen}
"""
CARD = {
    "summary": "The mean of a view, times a weight.",
    "entrypoint": "predict.py:Model",
    "inputs": [{"name": "view", "formats": ["image/png"], "datatype": "UINT8", "max_dims": [64, 64]}],
    "outputs": [{"name": "score", "datatype": "FP64", "shape": [1]}, {"name": "interfaces", "datatype": "BYTES"}],
}


def test_the_served_model_is_sealed_like_a_platform_worker():
    config = compose_config(CPU_FILE)
    services = config["services"]
    serve, port = services["serve"], services["serve-port"]
    assert serve["network_mode"] == "none" and "ports" not in serve
    assert serve["read_only"] is True and serve["cap_drop"] == ["ALL"] and serve["user"] == "1000:1000"
    assert serve["security_opt"] == ["no-new-privileges"]
    mounts = {m.split(":")[1]: m for m in serve["volumes"]}
    assert mounts["/opt/m2d/model"].endswith(":ro") and mounts["/opt/m2d/serve"].endswith(":ro")
    assert "/mnt/dataset" not in mounts and "/mnt/export" not in mounts
    # Only this machine reaches the port; only the front has a network.
    assert port["ports"] == ["127.0.0.1:8080:8080/tcp"]
    # The socket's folder is a tiny tmpfs of the worker's uid, as on the platform.
    assert config["volumes"]["serve-socket"]["driver_opts"]["type"] == "tmpfs"
    # Neither starts with the training dry run.
    assert serve["profiles"] == port["profiles"] == ["serve"]


def png(value: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _wait_ready(url: str, timeout: float = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if requests.get(f"{url}/v2/models/toy-scoring/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the local model did not get ready on {url}")


@pytest.mark.slow
@pytest.mark.docker
def test_a_model_folder_answers_locally_as_the_store_answers(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weight.txt").write_text("2.0\n")
    (model / "predict.py").write_text(PREDICT)
    (model / "m2d-model.json").write_text(json.dumps(CARD))
    for path in (model, *model.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    project, port = f"m2dservedry{os.getpid()}", free_port()
    env = {
        **defaults_env(),
        "DOCKER_BUILDKIT": "0",
        "COMPOSE_DOCKER_CLI_BUILD": "0",
        "DRY_RUN_MODEL": str(model),
        "DRY_RUN_MODEL_NAME": "toy-scoring",
        "DRY_RUN_SERVE_PORT": str(port),
    }
    compose = ["docker-compose", "-p", project, "-f", str(CPU_FILE), "--profile", "serve"]

    def run(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
        result = subprocess.run([*compose, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
        return result

    url = f"http://127.0.0.1:{port}"
    try:
        # The images a training dry run builds (cached after the first).
        run("build", "runtime")
        run("build", "submission")
        run("up", "-d", "serve-port", timeout=300)
        print(f"\nlocal model ready {_wait_ready(url):.1f} s after docker-compose up returned")

        # The seed's curl shape: -T view.png
        answer = requests.put(f"{url}/predictions/toy-scoring", data=png(10), timeout=30)
        assert answer.status_code == 200, answer.text
        # The model saw no network at all, as on the platform.
        assert answer.json() == {"score": 20.0, "interfaces": "lo"}
        assert answer.headers["X-M2D-Model-Version"] == "toy-scoring/1"
        # multipart, one part per input name
        parts = requests.post(f"{url}/predictions/toy-scoring", files={"view": png(3)}, timeout=30)
        assert parts.json()["score"] == 6.0
        wrong = requests.post(f"{url}/predictions/toy-scoring", files={"LCC": png(3)}, timeout=30)
        assert wrong.status_code == 400 and "takes the inputs view" in wrong.json()["message"]
        assert requests.put(f"{url}/predictions/other-model", data=png(1), timeout=30).status_code == 404

        # The Open Inference Protocol
        metadata = requests.get(f"{url}/v2/models/toy-scoring", timeout=30).json()
        assert [i["name"] for i in metadata["inputs"]] == ["view"] and metadata["versions"] == ["1"]
        tensor = {
            "name": "view",
            "datatype": "BYTES",
            "shape": [1],
            "data": [base64.b64encode(png(4)).decode()],
            "parameters": {"content_type": "image/png"},
        }
        infer = requests.post(f"{url}/v2/models/toy-scoring/versions/1/infer", json={"inputs": [tensor]}, timeout=30)
        assert infer.status_code == 200, infer.text
        assert infer.json()["outputs"][0] == {"name": "score", "datatype": "FP64", "shape": [1], "data": [8.0]}

        # A predict.py that breaks its declaration is refused here as the platform refuses it.
        (model / "predict.py").write_text(PREDICT.replace('"interfaces": seen', '"extra": 1'))
        run("restart", "serve", timeout=120)
        _wait_ready(url)
        broken = requests.put(f"{url}/predictions/toy-scoring", data=png(1), timeout=30)
        assert broken.status_code == 502 and "extra" in broken.json()["message"]
    finally:
        down = [*compose, "down", "-v", "--remove-orphans"]
        subprocess.run(down, cwd=REPO, env=env, capture_output=True, timeout=300)
