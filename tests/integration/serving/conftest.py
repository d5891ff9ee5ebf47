"""The serving tests' fixtures: the model store's (released exports, registrations, scoped API
clients) on local export and model store folders, since serving reads the store through the same
storage API for S3; a released toy model deployed on the real engine; a web process beside it."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from modelstore.services import model_register
from runner import serving as agent
from serving.models import ServeWorker
from serving.services import deployment_scale
from tests.conftest import _worker_database_url, free_port
from tests.integration.modelstore import conftest as modelstore
from tests.reliability.test_restarts import start_web

api, approved, finished_submission, released, store, users = (
    modelstore.api,
    modelstore.approved,
    modelstore.finished_submission,
    modelstore.released,
    modelstore.store,
    modelstore.users,
)


@pytest.fixture
def export_storage(settings, tmp_path):
    """The local export folder."""
    settings.M2D_EXPORT_ROOT = tmp_path / "exports"
    settings.M2D_EXPORT_ROOT.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(settings.M2D_EXPORT_ROOT)},
        },
    }
    return "local"


PREDICT = """
import json, os, socket, sys, time
import numpy as np


def sandbox():
    facts = {"uid": os.getuid(), "interfaces": sorted(os.listdir("/sys/class/net"))}
    facts["dataset"] = os.path.exists("/mnt/dataset")
    facts["export"] = os.path.exists("/mnt/export")
    facts["docker_socket"] = os.path.exists("/var/run/docker.sock")
    try:
        open("/opt/m2d/model/new", "w")
        facts["model_dir_writable"] = True
    except OSError:
        facts["model_dir_writable"] = False
    try:
        socket.getaddrinfo("example.org", 443)
        facts["dns"] = "answers"
    except OSError as exc:
        facts["dns"] = str(exc)
    with open("/proc/net/route") as routes:
        facts["routes"] = routes.read().splitlines()[1:]
    return facts


class Model:
    def load(self, model_dir, device):
        self.weight = float(open(os.path.join(model_dir, "weight.txt")).read())

    def predict(self, inputs, parameters):
        image = np.asarray(inputs["view"])
        mode = int(image.flat[0])
        if mode == 1:
            time.sleep(10**6)
        if mode == 2:
            os.unlink("/run/m2d/worker.sock")
            os.symlink("/var/run/docker.sock", "/run/m2d/worker.sock")
        if mode == 201:  # far more memory than the container may have
            hog = [np.ones(64 * 2**20, np.uint8) for _ in range(1000)]
        if mode == 202:
            os._exit(3)
        if mode == 203:  # 1 GiB to the container's log
            line = "x" * (2**20 - 1) + "\\n"
            for _ in range(1024):
                sys.stdout.write(line)
            sys.stdout.flush()
        if mode == 204:
            return {"score": 1.0, "sandbox": "", "probability": 0.5}
        if mode == 205:
            return {"score": float("nan"), "sandbox": ""}
        if mode == 206:
            return {"score": 0.0, "sandbox": json.dumps(fill("/run/m2d"))}
        if mode == 207:
            time.sleep(3)
        facts = json.dumps(sandbox()) if mode == 3 else ""
        return {"score": float(image.mean()) * self.weight, "sandbox": facts}


def fill(folder):
    # as many files and FIFOs as the folder takes, then what it holds
    made, error = 0, ""
    try:
        for i in range(100000):
            if i % 2:
                os.mkfifo(os.path.join(folder, f"fifo{i}"))
            else:
                with open(os.path.join(folder, f"junk{i}"), "wb") as out:
                    out.write(b"x" * 4096)
            made += 1
    except OSError as exc:
        error = exc.strerror
    held = sum(os.lstat(os.path.join(folder, n)).st_size for n in os.listdir(folder))
    return {"made": made, "error": error, "bytes": held, "entries": len(os.listdir(folder))}
"""
LOADS = """
import time


class Model:
    def load(self, model_dir, device):
        if open(model_dir + "/how.txt").read().strip() == "slow":
            time.sleep(4)
        else:
            raise RuntimeError("the weights file is missing")

    def predict(self, inputs, parameters):
        return {"score": 1.0, "sandbox": ""}
"""
CARD = {
    "summary": "A toy scorer: the mean of the view, times a weight.",
    "entrypoint": "predict.py:Model",
    "inputs": [
        {"name": "view", "formats": ["image/png", "application/x-npy"], "datatype": "UINT8", "max_dims": [64, 64]}
    ],
    "outputs": [
        {"name": "score", "datatype": "FP64", "shape": [1]},
        {"name": "sandbox", "datatype": "BYTES", "shape": [1]},
    ],
    "licence": "CC-BY-4.0",
}
FILES = {
    "model/weight.txt": b"2.0\n",
    "model/predict.py": PREDICT.encode(),
    "model/m2d-model.json": json.dumps(CARD).encode(),
    # two more models of the same submission (one image): one loads slowly, one cannot load
    "slow/how.txt": b"slow\n",
    "slow/predict.py": LOADS.encode(),
    "slow/m2d-model.json": json.dumps(CARD).encode(),
    "broken/how.txt": b"broken\n",
    "broken/predict.py": LOADS.encode(),
    "broken/m2d-model.json": json.dumps(CARD).encode(),
}


def npy(array) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def png(array) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def serve_settings():
    """Settings the workers start with; a test module overrides this fixture to change them."""


@pytest.fixture
def model_files():
    """The released files of the toy model; a test module overrides this fixture to serve another."""
    return FILES


@pytest.fixture
def deployed(released, settings, tmp_path, serve_settings, model_files):
    """A registered version of a released toy model, with one ready worker on this engine."""
    settings.M2D_QUEUE_OPS = "serving-tests-reconcile-by-hand"  # the test reconciles itself
    serve_dir = f"/tmp/m2d-serve-{os.getpid()}"  # a socket's path must stay under 108 bytes
    settings.M2D_SERVE_DIR = type(tmp_path)(serve_dir)
    settings.M2D_SERVE_RESPONSE_TIMEOUT = 3
    submission = released(model_files, held=())
    with_archive(submission, settings)
    version = model_register(by=submission.owner, submission=submission, paths=["model/"], name="toy-scoring")
    deployment = deployment_scale(by=submission.owner, version=version, min_workers=1)
    agent.reconcile()
    yield version, deployment, submission.owner
    deployment_scale(by=submission.owner, version=version, min_workers=0, max_workers=0)
    agent.reconcile()
    shutil.rmtree(serve_dir, ignore_errors=True)


def with_archive(submission, settings) -> None:
    """The submission's stored zip, so the runner can rebuild its image on this host."""
    archive = f"submissions/serving-{submission.pk}.zip"
    (settings.MEDIA_ROOT / "submissions").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(settings.MEDIA_ROOT / archive, "w") as zf:
        zf.writestr("main.py", "print('trained')\n")
        zf.writestr("requirements.txt", "")
    submission.archive, submission.image_id = archive, ""
    submission.save(update_fields=["archive", "image_id"])


def ready(deployment) -> list[ServeWorker]:
    return list(deployment.workers.filter(state=ServeWorker.State.READY))


@pytest.fixture
def portal(deployed, settings):
    """A web process on the test database, sharing the store and the workers' sockets with this test."""
    port = free_port()
    web = start_web(
        port,
        {
            **os.environ,
            "DATABASE_URL": _worker_database_url(),
            "M2D_EXPORT_STORAGE": "local",
            "M2D_EXPORT_ROOT": str(settings.M2D_EXPORT_ROOT),
            "M2D_MODEL_STORE_ROOT": settings.STORAGES["models"]["OPTIONS"]["location"],
            "M2D_SERVE_DIR": str(settings.M2D_SERVE_DIR),
        },
    )
    yield f"http://127.0.0.1:{port}"
    web.terminate()
    web.wait(timeout=30)
