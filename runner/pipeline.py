"""From a queued submission to a finished one: run, collect, record (builds: runner.builds).

Workers call these; each step is idempotent and moves the submission only through
`submissions.transitions`. Faults of the platform end as stage `infrastructure`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

from accounts.selectors import MlflowCredentials, mlflow_credentials, mlflow_password_now
from exports.services import export_collect
from ops.logs import submission_context
from submissions import exits, logpolicy, metrics
from submissions.models import Submission
from submissions.progress import format_duration as duration

from . import docker_api, provenance, scheduling
from .builds import image_on_this_host
from .export_volume import ExportLimitExceeded, ExportLimits, ExportVolume, ExportVolumeError
from .gateway import GatewayPolicy, GatewayStats, TrackingGateway
from .naming import container_name, image_tag, labels, log_dir
from .outcomes import fail, platform_lost, run_reason, settle, size
from .phases import Phases

log = logging.getLogger(__name__)
S = Submission.Status
Stage = Submission.Stage


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
    credentials = mlflow_credentials(submission.owner_id)
    volume = export_volume(submission.pk)
    try:
        export_dir = volume.mountpoint if adopt and volume.mountpoint.exists() else volume.create()
    except (ExportVolumeError, OSError) as exc:
        volume.destroy()
        platform_lost(submission, f"The platform could not prepare /mnt/export: {exc}")
        return
    phases.done("export volume")
    try:
        image = image_on_this_host(submission)
    except (docker_api.PlatformFault, docker_api.BuildFailed, TimeoutError) as exc:
        volume.destroy()
        platform_lost(submission, f"The platform could not make the image available on {submission.slot}: {exc}")
        return
    gateway_dir = settings.M2D_GATEWAY_DIR / str(submission.pk)
    if not (adopt and gateway_dir.is_dir()):
        _prepare_folder(gateway_dir, 0, 0o755)
    spec = run_spec(submission, credentials, image, export_dir, gateway_dir)
    gateway = _gateway(submission, credentials, gateway_dir)
    outcome, export_problem = None, ""
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
        # The image was described at its build; the run adds only what the engine says of it.
        provenance.capture_run(submission=submission, container=spec.name)
        phases.done("provenance")
        try:
            docker_api.remove_run(spec.name)
        except docker_api.PlatformFault:
            log.warning("could not clean up after submission %s; the reconciler will", submission.pk)
        phases.done("container removal")
        try:
            volume.collect(settings.M2D_EXPORT_ROOT / str(submission.pk), export_limits())
        except ExportLimitExceeded as exc:
            export_problem = str(exc)
        finally:
            volume.destroy()
        phases.done("export collection")
    _finish(submission, spec, outcome, fault, stats, export_problem)
    phases.done("outcome recorded")
    submission.refresh_from_db()
    if submission.is_finished and not settings.M2D_KEEP_IMAGES:
        # Off the slot's path: the slot takes its next job while the image goes.
        threading.Thread(target=_remove_image, args=(submission.pk,), daemon=True).start()
    log.info("submission %s: run phases: %s", submission.pk, phases)


def export_limits() -> ExportLimits:
    return ExportLimits(
        max_bytes=settings.M2D_EXPORT_MAX_BYTES,
        max_files=settings.M2D_EXPORT_MAX_FILES,
        max_path_chars=settings.M2D_EXPORT_MAX_PATH_CHARS,
        name_characters=settings.M2D_EXPORT_NAME_CHARACTERS,
    )


def _gateway(submission: Submission, credentials: MlflowCredentials, gateway_dir: Path) -> TrackingGateway:
    """The run's tracking gateway, with what is left of the submission's allowances (an adopted or
    requeued run goes on from its earlier attempts) within the researcher's exit budget."""
    allowance = exits.reserve_tracking(submission)
    submission.refresh_from_db(fields=["tracking_calls", "tracking_bytes", "tracking_bytes_received"])
    used = GatewayStats(
        calls=submission.tracking_calls,
        bytes_in=submission.tracking_bytes,
        bytes_out=submission.tracking_bytes_received,
    )
    return TrackingGateway(
        socket_path=gateway_dir / "gateway.sock",
        upstream_url=settings.MLFLOW_URL,
        policy=GatewayPolicy(
            submission_id=submission.pk,
            username=credentials.username,
            password=credentials.password,
            experiment_name=credentials.experiment_name,
            max_bytes=allowance.total,
            max_bytes_in=settings.M2D_TRACKING_MAX_BYTES_IN,
            max_answer_bytes=settings.M2D_TRACKING_MAX_ANSWER_BYTES,
            budget_limited=allowance.limited_by_budget,
        ),
        socket_uid=settings.M2D_FORWARDER_UID if os.geteuid() == 0 else None,
        current_password=lambda: _owner_mlflow_password(credentials.researcher_id),
        used=used,
        on_usage=lambda stats: _record_usage(submission.pk, stats),
    )


def _record_usage(submission_id: int, stats: GatewayStats) -> None:
    """The gateway's totals onto the submission: from its thread pool while the run goes (whose
    database connection is given back), and from the slot's own thread when it stops."""
    try:
        Submission.objects.filter(pk=submission_id).update(
            tracking_calls=stats.calls, tracking_bytes=stats.bytes_in, tracking_bytes_received=stats.bytes_out
        )
    finally:
        if threading.current_thread() is not threading.main_thread():
            connection.close()


def run_spec(
    submission: Submission, credentials: MlflowCredentials, image: str, export_dir: Path, gateway_dir: Path
) -> docker_api.RunSpec:
    """The run container as the settings shape it: sandboxed, beside its tracking forwarder."""
    return docker_api.RunSpec(
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
            "MLFLOW_TRACKING_URI": "http://mlflow-server:3001",  # the forwarder, beside the run
            "MLFLOW_TRACKING_USERNAME": credentials.username,
            "MLFLOW_TRACKING_PASSWORD": credentials.password,
            "MLFLOW_EXPERIMENT_NAME": credentials.experiment_name,
            # a refused call (4xx) fails at once; an unreachable gateway (a run worker restarting and
            # adopting the run) is retried for about a minute, not the client's default four
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # MLflow's "View run at http://mlflow-server:3001/…" names an address that exists only
            # inside the sandbox; the submission's page is where the run is seen.
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
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
        stop_grace=settings.M2D_STOP_GRACE_SECONDS,
        log_path=log_dir(submission.pk) / "run.log",
        log_max_bytes=settings.M2D_LOG_MAX_BYTES,
        gpu_id=submission.gpu_id or None,
    )


def _owner_mlflow_password(researcher_pk: int) -> str:
    """The owner's MLflow password now (they may rotate it mid-run); asked from the gateway's
    thread pool, whose database connection is given back."""
    try:
        return mlflow_password_now(researcher_pk)
    finally:
        connection.close()


def _remove_image(submission_id: int) -> None:
    try:
        docker_api.remove_image(image_tag(submission_id))
    except docker_api.PlatformFault:
        log.warning("could not remove the image of submission %s; the reconciler will", submission_id)


def _finish(submission, spec, outcome, fault: str, stats, export_problem: str = "") -> None:
    log.info(
        "submission %s: tracking gateway %s calls (%s refused), %s bytes in, %s bytes out",
        submission.pk,
        stats.calls,
        stats.refused,
        stats.bytes_in,
        stats.bytes_out,
    )
    exits.settle_tracking(submission.pk, submission.owner_id, stats.bytes_in)
    # What the researcher will ever see of the run's output: the capped tail, within their exit
    # budget, charged once; the reason quotes only from it.
    raw_tail = docker_api.tail(spec.log_path, settings.M2D_LOG_TAIL_LINES)
    log_tail = exits.charge_log_tail(submission, logpolicy.cap(raw_tail)[0])
    export_collect(
        submission=submission,
        folder=settings.M2D_EXPORT_ROOT / str(submission.pk),
        problem=export_problem,
    )
    common = {
        "run_log_tail": log_tail,
        "tracking_calls": stats.calls,
        "tracking_bytes": stats.bytes_in,  # what left the sandbox; capped by M2D_TRACKING_MAX_BYTES
        "tracking_bytes_received": stats.bytes_out,  # answers into it; capped by M2D_TRACKING_MAX_BYTES_IN
        # The history is final now that the gateway is closed: read it once, and keep it.
        "metrics": read.final if (read := metrics.collect(submission)) is not None else {},
    }
    if export_problem and not fault:
        fail(submission, Stage.EXPORT, export_problem, exit_code=outcome.exit_code, **common)
        return
    if fault:
        platform_lost(submission, f"The platform lost the run: {fault}", **common)
    elif outcome.timed_out:
        settle(
            submission,
            S.TIMED_OUT,
            failure_stage=Stage.RUN,
            exit_code=outcome.exit_code,
            reason=f"timed_out after {duration(settings.M2D_RUN_TIMEOUT)} (the run time limit)",
            **common,
        )
    elif outcome.silent:
        settle(
            submission,
            S.TIMED_OUT,
            failure_stage=Stage.RUN,
            exit_code=outcome.exit_code,
            reason=f"timed_out: no output for {duration(settings.M2D_RUN_SILENCE_TIMEOUT)}, so the run was stopped. "
            "Print progress regularly; a hung data loader or a deadlock looks like this.",
            **common,
        )
    elif outcome.oom_killed:
        fail(
            submission,
            Stage.RUN,
            f"out of memory at {size(settings.M2D_RUN_MEMORY)}: the run used all the "
            "memory it may use and was stopped. Use smaller batches or a smaller model.",
            exit_code=outcome.exit_code,
            oom_killed=True,
            **common,
        )
    elif outcome.exit_code == 0:
        settle(submission, S.SUCCEEDED, exit_code=0, **common)
    else:
        fail(submission, Stage.RUN, run_reason(outcome.exit_code, log_tail), exit_code=outcome.exit_code, **common)


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
