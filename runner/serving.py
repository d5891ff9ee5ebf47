"""Serving workers: the containers of deployed model versions, kept to what each deployment asks.

Each worker is the submission's own image (rebuilt from its stored zip when this host does not
hold it), running the platform's server beside the model's code, sealed: no network at all, no
data set, no export folder, no Docker socket. Reconciling is idempotent and safe to repeat: it
starts what is missing, removes what is too many or dead, and removes containers nobody records.
"""

from __future__ import annotations

import logging
import os
import shutil
import time

from django.conf import settings

from serving import selectors, services
from serving.files import ModelFilesDamaged, model_folder, socket_folder, socket_path
from serving.models import ServeWorker
from serving.workerclient import WorkerUnreachable, wait_ready

from . import builds, docker_api

log = logging.getLogger(__name__)
SERVER_DIR = settings.BASE_DIR / "docker_scripts" / "serve"
MAX_SOCKET_PATH = 107  # a unix socket's path, NUL included, fits in 108 bytes


def worker_name(worker_id: int) -> str:
    return f"m2d-{settings.M2D_INSTANCE}-serve-{worker_id}"


def reconcile() -> None:
    for deployment in selectors.deployments_to_reconcile():
        _follow(deployment)
    _remove_unrecorded()


def _follow(deployment) -> None:
    live = selectors.live_workers(deployment)
    for worker in live:
        status, exit_code, oom = docker_api.serve_worker_state(worker_name(worker.pk))
        if worker.state == ServeWorker.State.READY and status != "running":
            why = "it ran out of memory" if oom else f"its container is {status} (exit {exit_code})"
            _stop(worker, failed=True, reason=f"the worker stopped: {why}")
            live.remove(worker)
    for worker in live[deployment.max_workers :]:
        _stop(worker, failed=False, reason="scaled down")
    for _ in range(deployment.min_workers - len(live)):
        start_worker(deployment)


def start_worker(deployment) -> ServeWorker:
    """Start one worker and wait until its model answers; it ends `ready` or `failed`."""
    worker = services.worker_begin(deployment=deployment)
    name, started = worker_name(worker.pk), time.monotonic()
    folder = socket_folder(worker.pk)
    try:
        if len(str(socket_path(worker.pk))) > MAX_SOCKET_PATH:
            raise WorkerUnreachable(
                f"the socket path under M2D_SERVE_DIR is over {MAX_SOCKET_PATH} bytes; choose a shorter one"
            )
        model_dir = model_folder(deployment.version)
        image = builds.image_on_this_host(deployment.version.submission)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.chown(folder, settings.M2D_SERVE_UID, os.getgid())
        folder.chmod(0o770)
        docker_api.start_serve_worker(
            docker_api.ServeSpec(
                name=name,
                image=image,
                model_dir=model_dir,
                server_dir=SERVER_DIR,
                socket_dir=folder,
                user=f"{settings.M2D_SERVE_UID}:{os.getgid()}",
                memory=settings.M2D_SERVE_MEMORY,
                cpus=settings.M2D_SERVE_CPUS,
                pids=settings.M2D_SERVE_PIDS,
                shm_size=settings.M2D_SERVE_SHM,
                tmp_size=settings.M2D_SERVE_TMP,
                labels={
                    docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE,
                    "org.m2d.deployment": str(deployment.pk),
                    "org.m2d.worker": str(worker.pk),
                },
            )
        )
        wait_ready(
            socket_path(worker.pk),
            settings.M2D_SERVE_UID,
            settings.M2D_SERVE_STARTUP_TIMEOUT,
            still_running=lambda: docker_api.serve_worker_state(name)[0] == "running",
        )
    except (WorkerUnreachable, ModelFilesDamaged, docker_api.PlatformFault, docker_api.BuildFailed) as exc:
        reason = str(exc)
        if isinstance(exc, WorkerUnreachable):
            tail = docker_api.serve_worker_log(name, 1500).strip()
            reason += f"\n{tail}" if tail else ""
        _stop(worker, failed=True, reason=reason)
        log.warning("serving worker %s failed to start: %s", worker.pk, reason)
        return worker
    services.worker_ready(worker=worker, container=name, seconds=time.monotonic() - started)
    return worker


def recycle(worker: ServeWorker, reason: str) -> None:
    """A worker that broke a request (timed out, replaced its socket) is not asked again."""
    _stop(worker, failed=True, reason=reason)


def _stop(worker: ServeWorker, *, failed: bool, reason: str) -> None:
    try:
        docker_api.remove_serve_worker(worker_name(worker.pk))
    except docker_api.PlatformFault as exc:
        log.warning("could not remove serving worker %s: %s", worker.pk, exc)
    shutil.rmtree(socket_folder(worker.pk), ignore_errors=True)
    services.worker_end(worker=worker, failed=failed, reason=reason)


def _remove_unrecorded() -> None:
    """Containers of workers the database does not count as live (left by a killed process)."""
    live = {worker_name(w.pk) for d in selectors.deployments_to_reconcile() for w in selectors.live_workers(d)}
    for name in docker_api.serve_workers_labelled({docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE}):
        if name not in live:
            docker_api.remove_serve_worker(name)
