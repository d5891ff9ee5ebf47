"""A GPU deployment on the real engine: the reconciler gives its worker a GPU slot of this host
that no run holds, and the worker's container asks the engine for that GPU alone. This engine has
no NVIDIA runtime, so the start is refused by the engine for that very request: the worker fails,
its slot is free again for runs, and the container made from the reconciler's spec carries the
device request (inspected before any start)."""

from __future__ import annotations

import os
import shutil

import docker
import pytest

from modelstore.services import model_register
from runner import builds, host_health, scheduling
from runner import serving as agent
from runner.docker_api.serving import serve_kwargs
from serving.files import model_folder
from serving.models import ServeWorker
from serving.services import deployment_scale
from submissions.models import Submission
from submissions.queue import host_name

from .conftest import FILES, with_archive

pytestmark = [pytest.mark.docker, pytest.mark.services]


@pytest.fixture
def gpu_version(released, settings, tmp_path):
    settings.M2D_QUEUE_OPS = "serving-tests-reconcile-by-hand"
    settings.M2D_GPU_IDS = ["1"]  # this host offers GPU 1 to runs and serving workers
    settings.M2D_MAX_RUNNING_PER_RESEARCHER = 0
    serve_dir = f"/tmp/m2d-serve-gpu-{os.getpid()}"
    settings.M2D_SERVE_DIR = type(tmp_path)(serve_dir)
    submission = released(FILES, held=())
    with_archive(submission, settings)
    version = model_register(by=submission.owner, submission=submission, paths=["model/"], name="toy-gpu")
    host_health.report()
    yield version, submission.owner
    deployment_scale(by=submission.owner, version=version, min_workers=0, max_workers=0)
    agent.reconcile()
    shutil.rmtree(serve_dir, ignore_errors=True)


def test_a_gpu_worker_takes_a_free_gpu_slot_and_asks_the_engine_for_that_gpu(gpu_version, settings):
    version, owner = gpu_version
    slot = scheduling.Slot(host_name(), "gpu1", "1")
    deployment = deployment_scale(by=owner, version=version, min_workers=1, gpu=True)
    agent.reconcile()

    worker = deployment.workers.get()
    assert (worker.state, worker.slot, worker.gpu_id) == (ServeWorker.State.FAILED, slot.label, "1")
    assert "could not select device driver" in worker.reason and "gpu" in worker.reason, worker.reason
    client = docker.from_env()
    assert client.containers.list(all=True, filters={"label": f"org.m2d.worker={worker.pk}"}) == []

    job = Submission.objects.create(owner=owner, status="queued", archive="x.zip", archive_sha256="0" * 64)
    assert scheduling.claim_next(slot).pk == job.pk  # the failed worker let its GPU go

    version.submission.refresh_from_db()
    image = builds.image_on_this_host(version.submission_id, version.submission.image_id)
    spec = agent.serve_spec(deployment, worker, image, model_folder(version))
    container = client.containers.create(**{**serve_kwargs(spec), "name": f"{spec.name}-inspected"})
    try:
        host_config = client.api.inspect_container(container.id)["HostConfig"]
        assert [(r["DeviceIDs"], r["Capabilities"]) for r in host_config["DeviceRequests"]] == [(["1"], [["gpu"]])]
        assert host_config["NetworkMode"] == "none"
        assert "M2D_SERVE_DEVICE=cuda" in client.api.inspect_container(container.id)["Config"]["Env"]
    finally:
        container.remove(force=True)
