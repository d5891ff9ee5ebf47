"""From a received submission to a finished one: build, queue, run, collect.

Workers call these; each step is idempotent and moves the submission only through
`submissions.transitions`. Faults of the platform end as stage `infrastructure`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Researcher
from exports.provenance import provenance_capture
from exports.services import export_collect
from ops.logs import submission_context
from submissions.models import Submission
from submissions.transitions import TransitionConflict, transition
from tracking import readback

from . import docker_api, scheduling
from .dispatch import wake_run_slots
from .export_volume import ExportVolume, ExportVolumeError
from .gateway import GatewayPolicy, TrackingGateway
from .phases import Phases

log = logging.getLogger(__name__)
S = Submission.Status
Stage = Submission.Stage


def image_tag(submission_id: int) -> str:
    return f"m2d-submission:{settings.M2D_INSTANCE}-{submission_id}"


def container_name(submission_id: int) -> str:
    return f"m2d-{settings.M2D_INSTANCE}-run-{submission_id}"


def log_dir(submission_id: int) -> Path:
    return settings.VAR_DIR / "logs" / str(submission_id)


def labels(submission: Submission, slot: str = "") -> dict[str, str]:
    return {
        docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE,
        docker_api.LABEL_SUBMISSION: str(submission.pk),
        docker_api.LABEL_SLOT: slot,
        "org.m2d.owner": submission.owner.username,
    }


def _settle(submission: Submission, to: str, **fields) -> bool:
    """Move to an outcome unless someone (a cancel, the reconciler) settled it first."""
    try:
        transition(submission, to, **fields)
        return True
    except TransitionConflict:
        submission.refresh_from_db()
        log.info("submission %s was %s before it could become %s", submission.pk, submission.status, to)
        return False


def _fail(submission: Submission, stage: str, reason: str, **fields) -> bool:
    return _settle(submission, S.FAILED, failure_stage=stage, reason=reason[:4000], note=reason[:500], **fields)


# --- build ---------------------------------------------------------------------------------------


def build(submission_id: int) -> None:
    submission = Submission.objects.select_related("owner").get(pk=submission_id)
    if submission.status != S.RECEIVED:
        return  # already handled: a duplicate message
    try:
        transition(submission, S.BUILDING, heartbeat_at=timezone.now())
    except TransitionConflict:
        return
    spec = build_spec(submission)
    try:
        image_id = _build_leaving_nothing(spec, submission.pk)
    except docker_api.BuildCancelled:
        log.info("build of submission %s stopped: cancelled", submission.pk)
        return
    except docker_api.BuildFailed as exc:
        _fail(submission, Stage.BUILD, _build_reason(str(exc), exc.log), build_log_tail=exc.log)
        return
    except TimeoutError as exc:
        _settle(
            submission,
            S.TIMED_OUT,
            failure_stage=Stage.BUILD,
            reason=str(exc),
            build_log_tail=docker_api.tail(spec.log_path, settings.M2D_LOG_TAIL_LINES),
        )
        return
    except docker_api.PlatformFault as exc:
        _fail(submission, Stage.INFRASTRUCTURE, f"The platform could not build the image: {exc}")
        return
    if _settle(
        submission,
        S.QUEUED,
        image_id=image_id,
        build_log_tail=docker_api.tail(spec.log_path, settings.M2D_LOG_TAIL_LINES),
    ):
        transaction.on_commit(wake_run_slots)
    else:
        docker_api.remove_image(spec.tag)


def _build_leaving_nothing(spec: docker_api.BuildSpec, submission_id: int) -> str:
    try:
        try:
            return docker_api.build_image(spec, should_stop=_build_watch(submission_id))
        except docker_api.CacheLayerLost as exc:
            log.warning("build of submission %s lost a cached layer (%s); building it again", submission_id, exc)
            return docker_api.build_image(spec, should_stop=_build_watch(submission_id))
    finally:
        try:
            docker_api.remove_build_leftovers(settings.M2D_INSTANCE, submission_id)
        except docker_api.PlatformFault:
            pass  # the reconciler removes them once the engine answers


def build_spec(submission: Submission, log_name: str = "build.log") -> docker_api.BuildSpec:
    dockerfile = "execute_code" if settings.M2D_USE_GPU else "execute_code-without-gpu"
    return docker_api.BuildSpec(
        submission_id=submission.pk,
        archive=Path(submission.archive.path),
        dockerfile=settings.M2D_DOCKER_SCRIPTS_DIR / dockerfile,
        runtime_image=settings.M2D_RUNTIME_IMAGE,
        tag=image_tag(submission.pk),
        labels={k: v for k, v in labels(submission).items() if k != docker_api.LABEL_SLOT},  # one step, last
        log_path=log_dir(submission.pk) / log_name,
        timeout=settings.M2D_BUILD_TIMEOUT,
        log_max_bytes=settings.M2D_LOG_MAX_BYTES,
        memory=settings.M2D_BUILD_MEMORY,
    )


def _image_on_this_host(submission: Submission) -> str:
    """The run host's engine may not hold the image (it was built on another host, or pruned):
    build it here from the stored zip; the requirements layer cache of this host serves it."""
    if docker_api.image_exists(submission.image_id):
        return submission.image_id
    log.info("submission %s: image not on this host, building it here", submission.pk)
    return docker_api.build_image(build_spec(submission, "build-on-run-host.log"))


def _build_watch(submission_id: int):
    """Asked every second from the build's watcher thread: beat now and then, and say whether
    the submission was cancelled."""
    last_beat = [0.0]

    def should_stop() -> bool:
        try:
            if time.monotonic() - last_beat[0] >= settings.M2D_HEARTBEAT_SECONDS:
                last_beat[0] = time.monotonic()
                scheduling.beat(submission_id)
            return Submission.objects.filter(pk=submission_id, status=S.CANCELLED).exists()
        finally:
            connection.close()

    return should_stop


def _build_reason(error: str, build_log: str) -> str:
    if "pip install -r /opt/submission/requirements.txt" in error or "No matching distribution" in build_log:
        missing = re.findall(r"No matching distribution found for (\S+)", build_log)
        what = f" ({', '.join(sorted(set(missing)))})" if missing else ""
        return (
            f"Installing requirements.txt failed{what}. Check the package names and versions; "
            "the end of the build log shows pip's message."
        )
    return f"The image build failed: {error}"


# --- run -----------------------------------------------------------------------------------------


def run_queued(slot: scheduling.Slot | None = None) -> int:
    """Wait for this slot's orphaned run if there is one, then run queued submissions one after
    another until none is left for this slot; returns how many ran."""
    slot = slot or scheduling.slot_for_process()
    count = 0
    for orphan in scheduling.stale_runs().filter(slot=slot.label):
        if scheduling.take_over(orphan):
            with submission_context(orphan.pk):
                run(orphan, adopt=True)
            count += 1
    while (submission := scheduling.claim_next(slot)) is not None:
        with submission_context(submission.pk):
            run(submission)
        count += 1
    return count


def _prepare_folder(path: Path, uid: int, mode: int) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.chown(path, uid, uid) if os.geteuid() == 0 else None
    path.chmod(mode)
    return path


def export_volume(submission_id: int) -> ExportVolume:
    return ExportVolume(
        image=settings.M2D_EXPORT_VOLUME_DIR / f"{submission_id}.img",
        mountpoint=settings.M2D_EXPORT_VOLUME_DIR / str(submission_id),
        size_bytes=settings.M2D_EXPORT_MAX_BYTES,
        uid=settings.M2D_RUN_UID,
    )


def run(submission: Submission, adopt: bool = False) -> None:
    """Run a claimed submission to its end. With `adopt`, a run whose worker died is waited for
    where it stands: its container, export volume and gateway folder are still there."""
    phases = Phases()
    researcher = Researcher.objects.get(user=submission.owner)
    volume = export_volume(submission.pk)
    try:
        export_dir = volume.mountpoint if adopt and volume.mountpoint.exists() else volume.create()
    except (ExportVolumeError, OSError) as exc:
        volume.destroy()
        _platform_lost(submission, f"The platform could not prepare /mnt/export: {exc}")
        return
    phases.done("export volume")
    try:
        image = _image_on_this_host(submission)
    except (docker_api.PlatformFault, docker_api.BuildFailed, TimeoutError) as exc:
        volume.destroy()
        _platform_lost(submission, f"The platform could not make the image available on {submission.slot}: {exc}")
        return
    gateway_dir = settings.M2D_GATEWAY_DIR / str(submission.pk)
    if not (adopt and gateway_dir.is_dir()):
        _prepare_folder(gateway_dir, 0, 0o755)
    tracking_uri = "http://mlflow-server:3001"
    spec = docker_api.RunSpec(
        submission_id=submission.pk,
        name=container_name(submission.pk),
        image=image,
        forwarder_image=settings.M2D_FORWARDER_IMAGE,
        slot=submission.slot,
        labels=labels(submission, submission.slot),
        dataset_dir=settings.M2D_DATASET_DIR,
        export_dir=export_dir,
        gateway_dir=gateway_dir,
        environment={
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_TRACKING_USERNAME": researcher.mlflow_username,
            "MLFLOW_TRACKING_PASSWORD": researcher.mlflow_password,
            "MLFLOW_EXPERIMENT_NAME": researcher.mlflow_experiment_name,
            # a refused call (4xx) fails at once; an unreachable gateway (a run worker restarting and
            # adopting the run) is retried for about a minute, not the client's default four
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "GIT_PYTHON_REFRESH": "quiet",
            "PYTHONUNBUFFERED": "1",
            "HOME": "/tmp",
            "M2D_SUBMISSION_ID": str(submission.pk),
        },
        run_user=f"{settings.M2D_RUN_UID}:{settings.M2D_RUN_UID}",
        forwarder_user=f"{settings.M2D_FORWARDER_UID}:{settings.M2D_FORWARDER_UID}",
        memory=settings.M2D_RUN_MEMORY,
        cpus=settings.M2D_RUN_CPUS,
        pids=settings.M2D_RUN_PIDS,
        shm_size=settings.M2D_RUN_SHM,
        tmp_size=settings.M2D_RUN_TMP,
        timeout=settings.M2D_RUN_TIMEOUT,
        silence_timeout=settings.M2D_RUN_SILENCE_TIMEOUT,
        log_path=log_dir(submission.pk) / "run.log",
        log_max_bytes=settings.M2D_LOG_MAX_BYTES,
        gpu_id=submission.gpu_id or None,
    )
    gateway = TrackingGateway(
        socket_path=gateway_dir / "gateway.sock",
        upstream_url=settings.MLFLOW_URL,
        policy=GatewayPolicy(
            submission_id=submission.pk,
            username=researcher.mlflow_username,
            password=researcher.mlflow_password,
            experiment_name=researcher.mlflow_experiment_name,
            max_bytes=settings.M2D_TRACKING_MAX_BYTES,
        ),
        socket_uid=settings.M2D_FORWARDER_UID if os.geteuid() == 0 else None,
    )
    outcome = None
    gateway.start()
    phases.done("image and gateway")
    try:
        if adopt and not docker_api.run_exists(spec.name):
            raise docker_api.PlatformFault("its container is gone")
        docker_api.start_run(spec)
        phases.done("forwarder and container start")
        # A cancel that committed while the container was being created found nothing to stop.
        if Submission.objects.filter(pk=submission.pk, status=S.CANCELLED).exists():
            docker_api.stop_run(spec.name, grace=settings.M2D_STOP_GRACE_SECONDS)
        outcome = _follow(spec, submission.pk)
    except docker_api.PlatformFault as exc:
        fault = str(exc)
    else:
        fault = ""
    finally:
        phases.done("main.py")
        stats = gateway.stop()
        shutil.rmtree(gateway_dir, ignore_errors=True)
        # What ran (pip freeze, image digests, GPUs) must be read before the image and container go.
        provenance_capture(submission=submission, image=image_tag(submission.pk), container=spec.name)
        phases.done("provenance")
        try:
            docker_api.remove_run(spec.name)
        except docker_api.PlatformFault:
            log.warning("could not clean up after submission %s; the reconciler will", submission.pk)
        phases.done("container removal")
        try:
            volume.collect(settings.M2D_EXPORT_ROOT / str(submission.pk))
        finally:
            volume.destroy()
        phases.done("export collection")
    _finish(submission, spec, outcome, fault, stats)
    phases.done("outcome recorded")
    submission.refresh_from_db()
    if submission.is_finished and not settings.M2D_KEEP_IMAGES:
        # Off the slot's path: the slot takes its next job while the image goes.
        threading.Thread(target=_remove_image, args=(submission.pk,), daemon=True).start()
    log.info("submission %s: run phases: %s", submission.pk, phases)


def _remove_image(submission_id: int) -> None:
    try:
        docker_api.remove_image(image_tag(submission_id))
    except docker_api.PlatformFault:
        log.warning("could not remove the image of submission %s; the reconciler will", submission_id)


def _finish(submission, spec, outcome, fault: str, stats) -> None:
    log.info(
        "submission %s: tracking gateway %s calls (%s refused), %s bytes in, %s bytes out",
        submission.pk,
        stats.calls,
        stats.refused,
        stats.bytes_in,
        stats.bytes_out,
    )
    log_tail = docker_api.tail(spec.log_path, settings.M2D_LOG_TAIL_LINES)
    export_collect(submission=submission, folder=settings.M2D_EXPORT_ROOT / str(submission.pk))
    common = {
        "run_log_tail": log_tail,
        "tracking_calls": stats.calls,
        "tracking_bytes": stats.bytes_in,  # what left the sandbox; capped by M2D_TRACKING_MAX_BYTES
        # The history is final now that the gateway is closed: read it once, and keep it.
        "metrics": read.final if (read := readback.collect(submission)) is not None else {},
    }
    if fault:
        _platform_lost(submission, f"The platform lost the run: {fault}", **common)
    elif outcome.timed_out:
        _settle(
            submission,
            S.TIMED_OUT,
            failure_stage=Stage.RUN,
            exit_code=outcome.exit_code,
            reason=f"timed_out after {_duration(settings.M2D_RUN_TIMEOUT)} (the run time limit)",
            **common,
        )
    elif outcome.silent:
        _settle(
            submission,
            S.TIMED_OUT,
            failure_stage=Stage.RUN,
            exit_code=outcome.exit_code,
            reason=f"timed_out: no output for {_duration(settings.M2D_RUN_SILENCE_TIMEOUT)}, so the run was stopped. "
            "Print progress regularly; a hung data loader or a deadlock looks like this.",
            **common,
        )
    elif outcome.oom_killed:
        _fail(
            submission,
            Stage.RUN,
            f"out of memory at {_size(settings.M2D_RUN_MEMORY)}: the run used all the "
            "memory it may use and was stopped. Use smaller batches or a smaller model.",
            exit_code=outcome.exit_code,
            **common,
        )
    elif outcome.exit_code == 0:
        _settle(submission, S.SUCCEEDED, exit_code=0, **common)
    else:
        _fail(submission, Stage.RUN, _run_reason(outcome.exit_code, log_tail), exit_code=outcome.exit_code, **common)


def _follow(spec: docker_api.RunSpec, submission_id: int) -> docker_api.RunOutcome:
    """Wait for the run, riding out an engine restart: when the engine comes back and the run
    is still running (live restore), follow it again; when the run died with the engine, that
    is a platform fault."""
    started = time.monotonic()
    while True:
        remaining = max(1, int(spec.timeout - (time.monotonic() - started)))
        try:
            return docker_api.wait_run(
                dataclasses.replace(spec, timeout=remaining),
                heartbeat=lambda: _beat(submission_id),
                heartbeat_seconds=settings.M2D_HEARTBEAT_SECONDS,
            )
        except docker_api.PlatformFault:
            if not docker_api.wait_for_engine(settings.M2D_ENGINE_RESTART_WAIT_SECONDS):
                raise
            docker_api.client.cache_clear()
            if not docker_api.run_is_running(spec.name):
                raise
            log.info("submission %s: the engine is back and the run still runs; following it again", submission_id)


def _beat(submission_id: int) -> None:
    """Called from the watchdog's thread: say the run is watched, and give the thread's
    database connection back."""
    try:
        scheduling.beat(submission_id)
    finally:
        connection.close()


def _platform_lost(submission: Submission, reason: str, **fields) -> None:
    """A fault of the platform, not of the code: requeue it (a limited number of times), else fail
    it at stage infrastructure. Neither counts against the researcher."""
    retries = submission.infrastructure_retries
    if retries < settings.M2D_INFRASTRUCTURE_RETRIES:
        if _settle(
            submission,
            S.QUEUED,
            infrastructure_retries=retries + 1,
            note=f"{reason}; requeued",
            **{k: v for k, v in fields.items() if k != "metrics"},
        ):
            transaction.on_commit(wake_run_slots)
        return
    _fail(submission, Stage.INFRASTRUCTURE, reason, **fields)


TRACEBACK = "Traceback (most recent call last):"


def _run_reason(exit_code: int, log_tail: str) -> str:
    reason = f"main.py exited with code {exit_code}."
    lines = log_tail.splitlines()
    traceback = _last_traceback(lines)
    if traceback:
        reason += "\n" + "\n".join(traceback)
    elif log_tail:
        reason += " The end of its output:\n" + "\n".join(lines[-10:])
    return reason


def _last_traceback(lines: list[str]) -> list[str]:
    """The last traceback in the output that ends in its exception line; when processes died
    mid-traceback (a container stops all of them when main.py exits), the last one at all."""
    starts = [i for i, line in enumerate(lines) if line.startswith(TRACEBACK)]
    for start in reversed(starts):
        end = next((i for i in starts if i > start), len(lines))
        for i in range(start + 1, end):
            if lines[i] and not lines[i][0].isspace():  # the exception line: the traceback is whole
                return lines[start : i + 1] if end < len(lines) else lines[start:]
    return lines[starts[-1] :] if starts else []


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _size(docker_size: str) -> str:
    units = {"k": "KiB", "m": "MiB", "g": "GiB"}
    number, unit = docker_size[:-1], docker_size[-1:].lower()
    return f"{number} {units[unit]}" if unit in units else f"{docker_size} bytes"
