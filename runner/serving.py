"""Serving workers: the containers of deployed model versions, kept to what each deployment asks.

Each worker is the submission's own image (rebuilt from its stored zip when this host does not
hold it), running the platform's server beside the model's code, sealed: no network at all, no
data set, no export folder, no Docker socket. Its socket folder is a tiny tmpfs of its own
(SOCKET_FS): whatever the model writes there, files or FIFOs, fills a few kilobytes and inodes of
that folder, never the host's disk, and the gateway connects to nothing but the worker's own socket.

Reconciling is idempotent and safe to repeat (one reconciler at a time on a host, by a lock file):
it starts what is missing, after a growing pause when starts keep failing; removes what is too
many, dead, or restarted behind the platform's back; moves between min_worker and max_worker on
demand; and removes containers and socket folders nobody records.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from datetime import timedelta

from celery import signals
from django.conf import settings
from django.utils import timezone

from hosts.selectors import placeable_hosts
from hosts.services import host_serves
from serving import selectors, services
from serving.files import ModelFilesDamaged, model_folder, socket_folder, socket_path
from serving.models import ServeWorker
from serving.workerclient import WorkerTimedOut, WorkerUnreachable, ask, wait_ready
from submissions.queue import host_name, serving_queue, slots

from . import builds, docker_api, host_health
from .every import every

log = logging.getLogger(__name__)
MAX_SOCKET_PATH = 107  # a unix socket's path, NUL included, fits in 108 bytes
# The socket folder: room for the socket and a little more, owned by the worker, nothing to run.
SOCKET_FS = "size=64k,nr_inodes=16,nosuid,nodev,noexec"
# A prediction still running this long past the response timeout has nobody waiting for it: the
# gateway that asked died (kill -9, a restart) before it could recycle the worker.
ORPHANED_PREDICTION_GRACE = 5.0
# A worker of a GPU deployment holds one of its host's run slots (a GPU) while it lives; others
# run on the host's CPUs, which every host has.
SLOT_KINDS = ("cpu", "gpu")


def worker_name(worker_id: int) -> str:
    return f"m2d-{settings.M2D_INSTANCE}-serve-{worker_id}"


def reconcile() -> None:
    with _only_one() as alone:
        if not alone:
            return  # another reconciler is at it; it makes the same decisions
        host_health.report()
        host_serves(name=host_name(), relay=settings.M2D_SERVE_RELAY_URL)
        here, placeable = host_name(), {kind: set(placeable_hosts(kind)) for kind in SLOT_KINDS}
        for deployment in selectors.deployments_to_reconcile():
            _follow(deployment, here, placeable["gpu" if deployment.gpu else "cpu"])
        _remove_unrecorded()


@signals.worker_ready.connect
def start_serving_agent(sender=None, **kwargs):
    """A worker on its host's serving queue is that host's serving agent: it keeps the host's
    heartbeat and reconciles on its own timer (docker-compose.serving-host.yml)."""
    consumed = set(sender.app.amqp.queues.consume_from or {}) if sender is not None else set()
    if serving_queue(host_name()) in consumed:
        host_health.start_heartbeat()
        start_reconciling()


def start_reconciling() -> threading.Thread:
    """Reconcile now and every M2D_RECONCILE_SECONDS from a thread of the worker's main process:
    the agent of a further serving host listens only to its own queue, which no beat schedule
    reaches."""

    return every(
        lambda: settings.M2D_RECONCILE_SECONDS, reconcile, "m2d-serving-reconciler", "serving reconcile failed"
    )


@contextlib.contextmanager
def _only_one():
    settings.M2D_SERVE_DIR.mkdir(parents=True, exist_ok=True)
    with open(settings.M2D_SERVE_DIR / "reconcile.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _follow(deployment, here: str, placeable: set[str]) -> None:
    """Keep the deployment's workers to what it asks, counting those of every host and managing
    those on this one. Workers on hosts that take no new work (draining, unhealthy, silent) are on
    their way out: other hosts start their replacements, and they stop once enough replacements are
    ready, so that a drain never leaves a model unanswered."""
    live = selectors.live_workers(deployment)
    mine = [w for w in live if w.host in ("", here)]
    for worker in list(mine):
        if bool(worker.slot) != deployment.gpu:
            _stop(worker, failed=False, reason=f"the deployment now asks for {'a GPU' if deployment.gpu else 'CPUs'}")
        elif why := _gone(worker):
            _stop(worker, failed=True, reason=why)
        else:
            continue
        live.remove(worker)
        mine.remove(worker)
    wanted = _wanted(deployment, len(live))
    staying = [w for w in live if (here if w in mine else w.host) in placeable]
    if here not in placeable:
        ready_staying = sum(1 for w in staying if w.state == ServeWorker.State.READY)
        excess = max(0, len(live) - wanted)
        for n, worker in enumerate(reversed(mine)):
            if n < excess or ready_staying >= wanted:
                _stop(worker, failed=False, reason=f"its host {here} takes no new work; other hosts serve")
        return
    for worker in list(reversed(mine))[: max(0, len(staying) - wanted)]:
        _stop(worker, failed=False, reason="scaled down")
    if len(staying) < wanted and _may_start(deployment):
        for _ in range(wanted - len(staying)):
            started = start_worker(deployment)
            if started is None or started.state != ServeWorker.State.READY:
                break  # every GPU slot here is taken, or the next try waits for its pause


def _gone(worker: ServeWorker) -> str:
    """Why a live worker cannot be asked any more ('' when it can)."""
    state = docker_api.serve_worker_state(worker_name(worker.pk))
    if worker.state == ServeWorker.State.STARTING:
        return _adopt(worker, state)
    if state.status != "running":
        return f"the worker stopped: {_cause(state)}"
    if state.started_at and worker.ready_at and state.started_at > worker.ready_at:
        return "its container was restarted outside the platform; a fresh worker replaces it"
    return _unhealthy(worker)


def _unhealthy(worker: ServeWorker) -> str:
    """Why a running worker's server cannot be trusted with requests ('' when it can): its socket
    does not answer, or a prediction has outlived the response timeout with nobody waiting."""
    try:
        _, answer = ask(
            socket_path(worker.pk), settings.M2D_SERVE_UID, "GET", "/ready", None, timeout=5, max_answer=4096
        )
    except WorkerTimedOut:
        return ""  # a busy server; asked again at the next pass
    except WorkerUnreachable as exc:
        return f"its server does not answer on its socket ({exc})"
    try:
        oldest, limit = float(answer.get("oldest_seconds") or 0), settings.M2D_SERVE_RESPONSE_TIMEOUT
    except (AttributeError, TypeError, ValueError):
        return "its server answers /ready with something else than the platform's server does"
    if oldest > limit + ORPHANED_PREDICTION_GRACE:
        return (
            f"a prediction has run {oldest:.0f} s, past the response timeout of {limit:g} s, with nobody waiting "
            "for its answer (the web process that asked stopped); a fresh worker replaces it"
        )
    return ""


def _adopt(worker: ServeWorker, state) -> str:
    """A worker still `starting` when a reconciler (which holds the host's lock) looks at it was
    left by one that died while it waited. Its container goes on loading the model, so it is
    waited for, for what is left of its startup time, and kept; only a worker whose container
    stopped or whose time runs out is replaced. Its cold start counts from its first start."""
    left_by = "its start was left unfinished by a reconciler that stopped"
    if state.status != "running":
        return f"{left_by}, and {_cause(state)}"
    name = worker_name(worker.pk)
    elapsed = (timezone.now() - worker.started_at).total_seconds()
    try:
        wait_ready(
            socket_path(worker.pk),
            settings.M2D_SERVE_UID,
            max(settings.M2D_SERVE_STARTUP_TIMEOUT - elapsed, 1.0),
            still_running=lambda: docker_api.serve_worker_state(name).status == "running",
        )
    except WorkerUnreachable as exc:
        return f"{left_by} ({exc})"
    services.worker_ready(worker=worker, container=name, seconds=(timezone.now() - worker.started_at).total_seconds())
    log.info("serving worker %s, left starting by a reconciler that stopped, is ready and kept", worker.pk)
    return ""


def _cause(state) -> str:
    if state.oom_killed:
        return f"it ran out of memory (the limit is {settings.M2D_SERVE_MEMORY}, M2D_SERVE_MEMORY)"
    if state.status == "missing":
        return "its container is gone"
    return f"its container is {state.status} (exit {state.exit_code})"


def _wanted(deployment, live: int) -> int:
    """Workers to have: min_worker, one more when requests were refused as busy lately, one fewer
    when the version has answered nothing for a while, never over max_worker."""
    low, high = deployment.min_workers, max(deployment.max_workers, deployment.min_workers)
    now, wanted = timezone.now(), live
    if live < high and selectors.refused_busy_since(
        deployment, now - timedelta(seconds=settings.M2D_SERVE_BUSY_WINDOW)
    ):
        wanted = live + 1
    elif live > low and selectors.idle_since(deployment, now - timedelta(seconds=settings.M2D_SERVE_IDLE_SECONDS)):
        wanted = live - 1
    return min(max(wanted, low), high)


def _may_start(deployment) -> bool:
    return deployment.next_start_at is None or deployment.next_start_at <= timezone.now()


def start_worker(deployment) -> ServeWorker | None:
    """Start one worker and wait until its model answers; it ends `ready` or `failed`. A GPU
    deployment's worker first takes a GPU slot of this host that nothing holds (None when none is free)."""
    gpu_slots = {slot.label: slot.gpu_id for slot in slots() if slot.gpu_id is not None} if deployment.gpu else None
    worker = services.worker_begin(deployment=deployment, host=host_name(), gpu_slots=gpu_slots)
    if worker is None:
        log.info("%s waits for a GPU slot of this host: runs or other workers hold them all", deployment)
        return None
    name, started = worker_name(worker.pk), time.monotonic()
    folder = socket_folder(worker.pk)
    try:
        if len(str(socket_path(worker.pk))) > MAX_SOCKET_PATH:
            raise docker_api.PlatformFault(
                f"the socket path under M2D_SERVE_DIR is over {MAX_SOCKET_PATH} bytes; choose a shorter one"
            )
        model_dir = model_folder(deployment.version)
        image = builds.image_on_this_host(deployment.version.submission_id, deployment.version.submission.image_id)
        _mount_socket_folder(folder)
        docker_api.start_serve_worker(serve_spec(deployment, worker, image, model_dir))
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
        _remove(worker)
        if isinstance(exc, WorkerUnreachable):
            services.worker_start_failed(worker=worker, reason=reason)
        else:  # the engine, the store or the image's rebuild failed: the platform's, not the model's
            services.worker_start_fault(worker=worker, reason=reason)
        log.warning("serving worker %s failed to start: %s", worker.pk, reason)
        worker.state = ServeWorker.State.FAILED
        return worker
    services.worker_ready(worker=worker, container=name, seconds=time.monotonic() - started)
    worker.state = ServeWorker.State.READY
    return worker


def serve_spec(deployment, worker: ServeWorker, image: str, model_dir) -> docker_api.ServeSpec:
    """The sealed container of one worker: a GPU worker gets the one GPU its slot names, and its
    model loads on "cuda"; every other worker sees no GPU."""
    return docker_api.ServeSpec(
        name=worker_name(worker.pk),
        image=image,
        model_dir=model_dir,
        server_dir=settings.M2D_SERVE_SERVER_DIR,
        socket_dir=socket_folder(worker.pk),
        user=f"{settings.M2D_SERVE_UID}:{os.getgid()}",
        memory=settings.M2D_SERVE_MEMORY,
        cpus=settings.M2D_SERVE_CPUS,
        pids=settings.M2D_SERVE_PIDS,
        shm_size=settings.M2D_SERVE_SHM,
        tmp_size=settings.M2D_SERVE_TMP,
        in_flight=settings.M2D_SERVE_IN_FLIGHT,
        queue_seconds=settings.M2D_SERVE_QUEUE_SECONDS,
        card=json.dumps(deployment.version.card),
        gpu_id=worker.gpu_id or None,
        labels={
            docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE,
            "org.m2d.deployment": str(deployment.pk),
            "org.m2d.worker": str(worker.pk),
        },
    )


def recycle(worker: ServeWorker, reason: str) -> None:
    """A worker that broke a request (timed out, replaced its socket) is not asked again."""
    _stop(worker, failed=True, reason=reason)


def _stop(worker: ServeWorker, *, failed: bool, reason: str) -> None:
    _remove(worker)
    services.worker_end(worker=worker, failed=failed, reason=reason)


def _remove(worker: ServeWorker) -> None:
    try:
        docker_api.remove_serve_worker(worker_name(worker.pk))
    except docker_api.PlatformFault as exc:
        log.warning("could not remove serving worker %s: %s", worker.pk, exc)
    _unmount_socket_folder(socket_folder(worker.pk))


def _mount_socket_folder(folder) -> None:
    _unmount_socket_folder(folder)
    folder.mkdir(parents=True)
    options = f"{SOCKET_FS},mode=0770,uid={settings.M2D_SERVE_UID},gid={os.getgid()}"
    _mount_command("mount", "-t", "tmpfs", "-o", options, "m2d-serve", str(folder))


def _unmount_socket_folder(folder) -> None:
    if _is_mounted(folder):
        try:
            _mount_command("umount", str(folder))
        except docker_api.PlatformFault:
            _mount_command("umount", "-l", str(folder))
    shutil.rmtree(folder, ignore_errors=True)


def _is_mounted(folder) -> bool:
    target = os.path.realpath(folder)
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


def _mount_command(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if result.returncode:
        raise docker_api.PlatformFault(f"{command[0]} of a socket folder failed: {result.stderr.strip()}")


def _remove_unrecorded() -> None:
    """Containers and socket folders of workers the database does not count as live (replaced,
    or left by a killed process); a failed worker's record gets what the engine says ended it."""
    live = {w.pk for d in selectors.deployments_to_reconcile() for w in selectors.live_workers(d)}
    for name in docker_api.serve_workers_labelled({docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE}):
        worker_id = _worker_id(name)
        if worker_id in live:
            continue
        state = docker_api.serve_worker_state(name)
        if worker_id is not None and state.status != "running":
            services.worker_post_mortem(worker_id=worker_id, cause=_cause(state))
        docker_api.remove_serve_worker(name)
    folders = settings.M2D_SERVE_DIR / "w"
    for folder in folders.iterdir() if folders.is_dir() else ():
        if not folder.name.isdigit() or int(folder.name) not in live:
            _unmount_socket_folder(folder)


def _worker_id(name: str) -> int | None:
    tail = name.removeprefix(worker_name(0)[:-1])
    return int(tail) if tail.isdigit() else None
