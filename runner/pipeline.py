"""From a claimed submission to a finished one: run its job, gather the facts, hand them to the
services that record them (builds: runner.builds).

Workers call these; each step is idempotent. The run reads no model: it is given a frozen job
(runner.jobs) and reports frozen facts (submissions.facts); the services record those, and move
the submission only through `submissions.transitions`. Faults of the platform end as stage
`infrastructure`.
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

from accounts.selectors import mlflow_password_now
from disclosure.selectors import assessment_waiting
from exports.services import run_exports_record
from ops.logs import submission_context
from submissions.facts import RunFacts, TrackingTotals
from submissions.selectors import submission_cancelled
from submissions.services import run_facts_record, run_lost_record, run_tracking_reserve, run_tracking_usage_record

from . import dispatch, docker_api, host_health, provenance, scheduling
from .builds import image_for_run
from .export_volume import ExportLimitExceeded, ExportVolumeError
from .gateway import GatewayPolicy, GatewayStats, TrackingGateway
from .jobs import RunJob, export_volume, run_job_for
from .naming import container_name, image_tag, run_labels
from .phases import Phases

log = logging.getLogger(__name__)


def wake(worker: str, passed_on: bool = False) -> int:
    """A wake-up taken by this run worker: run the queued work its slot may take. A host that may
    take no new work (draining, unhealthy) stops listening for wake-ups until its heartbeat finds
    it may again (worker_signals), and hands the one it took on to the hosts that listen: else the
    queued work would wait for the reconciler while their slots are free."""
    count = run_queued()
    if not host_health.takes_work():
        dispatch.stop_taking_runs(worker)
        if not passed_on:
            log.info("this host takes no new work: its wake-up is passed on")
            dispatch.wake_run_slots(passed_on=True)
    return count


def run_queued(slot: scheduling.Slot | None = None) -> int:
    """Wait for this slot's orphaned run if there is one, then run queued submissions one after
    another until none is left for this slot; returns how many ran."""
    slot = slot or scheduling.slot_for_process()
    clear_leftovers(slot)
    count = 0
    for orphan in scheduling.stale_runs().filter(slot=slot.label):
        if scheduling.take_over(orphan):
            with submission_context(orphan.pk):
                run(run_job_for(orphan.pk), adopt=True)
            count += 1
    # The host's health is measured afresh before each claim: a full disk or a lost engine
    # stops it taking work as soon as its slot is free.
    while not host_health.report() and (submission := scheduling.claim_next(slot)) is not None:
        with submission_context(submission.pk):
            run(run_job_for(submission.pk))
        count += 1
    return count


def clear_leftovers(*slots: scheduling.Slot) -> None:
    """Remove what runs of these slots left on this host when they are no longer theirs: a worker
    back after its runs were queued again elsewhere (M2D_RUN_LOST_SECONDS) must not let them go on
    here. Their own orphans stay, to be adopted."""
    labels = {slot.label for slot in slots}
    try:
        containers = docker_api.list_labelled(settings.M2D_INSTANCE)
    except docker_api.PlatformFault:
        return  # the engine is away: this slot claims nothing either
    left = {
        int(c.labels[docker_api.LABEL_SUBMISSION])
        for c in containers
        if c.labels.get(docker_api.LABEL_SLOT) in labels
        and c.labels.get(docker_api.LABEL_ROLE) in ("run", "forwarder")
        and c.labels.get(docker_api.LABEL_SUBMISSION, "").isdigit()
    }
    ours = set(scheduling.runs_on_slots(labels, left))
    for submission_id in left - ours:
        log.warning("submission %s: its run here was queued again elsewhere; removing what it left", submission_id)
        try:
            docker_api.remove_run(container_name(submission_id))
        except docker_api.PlatformFault:
            return
        export_volume(submission_id).destroy()
        shutil.rmtree(settings.M2D_GATEWAY_DIR / str(submission_id), ignore_errors=True)


def _prepare_folder(path: Path, uid: int, mode: int) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.chown(path, uid, uid) if os.geteuid() == 0 else None
    path.chmod(mode)
    return path


def run(job: RunJob, adopt: bool = False) -> None:
    """Run a claimed submission's job to its end. With `adopt`, a run whose worker died is waited
    for where it stands: its container, export volume and gateway folder are still there."""
    phases = Phases()
    volume = job.export_volume
    try:
        export_dir = volume.mountpoint if adopt and volume.mountpoint.exists() else volume.create()
    except (ExportVolumeError, OSError) as exc:
        volume.destroy()
        run_lost_record(submission_id=job.submission_id, reason=f"The platform could not prepare /mnt/export: {exc}")
        return
    phases.done("export volume")
    try:
        image = image_for_run(job)
    except docker_api.BuildCancelled:
        volume.destroy()  # cancelled while this host built its image: the cancel is recorded already
        return
    except (docker_api.PlatformFault, docker_api.BuildFailed, TimeoutError) as exc:
        volume.destroy()
        run_lost_record(
            submission_id=job.submission_id,
            reason=f"The platform could not make the image available on {job.slot}: {exc}",
        )
        return
    if not (adopt and job.gateway_dir.is_dir()):
        _prepare_folder(job.gateway_dir, 0, 0o755)
    spec = run_spec(job, image, export_dir)
    gateway = _gateway(job)
    outcome, export_problem = None, ""
    gateway.start()
    phases.done("image and gateway")
    try:
        if adopt and not docker_api.run_exists(spec.name):
            raise docker_api.PlatformFault("its container is gone")
        docker_api.start_run(spec)
        phases.done("forwarder and container start")
        # A cancel that committed while the container was being created found nothing to stop.
        if submission_cancelled(job.submission_id):
            docker_api.stop_run(spec.name, grace=job.limits.stop_grace)
        outcome = _follow(spec, job.submission_id)
        if _stopped_with_its_engine(outcome):
            raise docker_api.PlatformFault("the Docker engine stopped, and the run with it")
    except docker_api.PlatformFault as exc:
        fault = str(exc)
    else:
        fault = ""
    finally:
        phases.done("main.py")
        stats = gateway.stop()
        shutil.rmtree(job.gateway_dir, ignore_errors=True)
        # The image was described at its build; the run adds only what the engine says of it.
        gpus, provenance_problems = provenance.run_gpus(spec.name)
        phases.done("provenance")
        try:
            docker_api.remove_run(spec.name)
        except docker_api.PlatformFault:
            log.warning("could not clean up after submission %s; the reconciler will", job.submission_id)
        phases.done("container removal")
        try:
            volume.collect(job.export_folder, job.limits.export)
        except ExportLimitExceeded as exc:
            export_problem = str(exc)
        finally:
            volume.destroy()
        phases.done("export collection")
    facts = RunFacts(
        submission_id=job.submission_id,
        export_folder=job.export_folder,
        exit_code=outcome.exit_code if outcome else None,
        oom_killed=bool(outcome and outcome.oom_killed),
        timed_out=bool(outcome and outcome.timed_out),
        silent=bool(outcome and outcome.silent),
        fault=fault,
        log_tail=docker_api.tail(spec.log_path, job.limits.log_tail_lines),
        tracking=_totals(stats),
        export_problem=export_problem,
        gpus=gpus,
        provenance_problems=provenance_problems,
    )
    finished = _finish(facts)
    phases.done("outcome recorded")
    if finished and not settings.M2D_KEEP_IMAGES and not assessment_waiting(job.submission_id):
        # Off the slot's path: the slot takes its next job while the image goes (a disclosure
        # job still to come asks its model for answers in it, and removes it once done).
        threading.Thread(target=_remove_image, args=(job.submission_id,), daemon=True).start()
    log.info("submission %s: run phases: %s", job.submission_id, phases)


def _finish(facts: RunFacts) -> bool:
    """Hand the facts to the services that record them; whether the submission has finished (a
    run the platform lost is queued again)."""
    totals = facts.tracking
    log.info(
        "submission %s: tracking gateway %s calls (%s refused), %s bytes in, %s bytes out",
        facts.submission_id,
        totals.calls,
        totals.refused,
        totals.bytes_sent,
        totals.bytes_received,
    )
    run_exports_record(facts=facts)
    return run_facts_record(facts=facts).is_finished


def _totals(stats: GatewayStats) -> TrackingTotals:
    return TrackingTotals(
        calls=stats.calls, refused=stats.refused, bytes_sent=stats.bytes_in, bytes_received=stats.bytes_out
    )


def _gateway(job: RunJob) -> TrackingGateway:
    """The run's tracking gateway, with what is left of the submission's allowances (an adopted or
    requeued run goes on from its earlier attempts) within the researcher's exit budget."""
    allowance = run_tracking_reserve(submission_id=job.submission_id)
    used = job.tracking_used
    credentials = job.credentials
    return TrackingGateway(
        socket_path=job.gateway_dir / "gateway.sock",
        upstream_url=settings.MLFLOW_URL,
        policy=GatewayPolicy(
            submission_id=job.submission_id,
            username=credentials.username,
            password=credentials.password,
            experiment_name=credentials.experiment_name,
            max_bytes=allowance.total,
            max_bytes_in=job.limits.tracking_max_bytes_in,
            max_answer_bytes=job.limits.tracking_max_answer_bytes,
            budget_limited=allowance.limited_by_budget,
        ),
        socket_uid=job.forwarder_uid if os.geteuid() == 0 else None,
        current_password=lambda: _owner_mlflow_password(credentials.researcher_id),
        used=GatewayStats(calls=used.calls, bytes_in=used.bytes_sent, bytes_out=used.bytes_received),
        on_usage=lambda stats: _record_usage(job.submission_id, stats),
    )


def _record_usage(submission_id: int, stats: GatewayStats) -> None:
    """The gateway's totals onto the submission: from its thread pool while the run goes (whose
    database connection is given back), and from the slot's own thread when it stops."""
    try:
        run_tracking_usage_record(submission_id=submission_id, totals=_totals(stats))
    finally:
        if threading.current_thread() is not threading.main_thread():
            connection.close()


def run_spec(job: RunJob, image: str, export_dir: Path) -> docker_api.RunSpec:
    """The run container as the job shapes it: sandboxed, beside its tracking forwarder."""
    credentials, limits = job.credentials, job.limits
    return docker_api.RunSpec(
        submission_id=job.submission_id,
        name=container_name(job.submission_id),
        image=image,
        forwarder_image=job.forwarder_image,
        slot=job.slot,
        labels=run_labels(job.submission_id, job.owner_username, job.slot),
        dataset_dir=job.dataset_dir,
        export_dir=export_dir,
        gateway_dir=job.gateway_dir,
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
            "M2D_SUBMISSION_ID": str(job.submission_id),
        },
        run_user=f"{job.run_uid}:{job.run_uid}",
        forwarder_user=f"{job.forwarder_uid}:{job.forwarder_uid}",
        memory=limits.memory,
        cpus=limits.cpus,
        pids=limits.pids,
        shm_size=limits.shm_size,
        tmp_size=limits.tmp_size,
        timeout=limits.timeout,
        silence_timeout=limits.silence_timeout,
        stop_grace=limits.stop_grace,
        log_path=job.log_path,
        log_max_bytes=limits.log_max_bytes,
        gpu_id=job.gpu_id,
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
                heartbeat=lambda: _beat(spec, submission_id),
                heartbeat_seconds=settings.M2D_HEARTBEAT_SECONDS,
            )
        except docker_api.PlatformFault:
            if not docker_api.wait_for_engine(settings.M2D_ENGINE_RESTART_WAIT_SECONDS):
                raise
            docker_api.client.cache_clear()
            if not docker_api.run_is_running(spec.name):
                raise
            log.info("submission %s: the engine is back and the run still runs; following it again", submission_id)


def _stopped_with_its_engine(outcome: docker_api.RunOutcome) -> bool:
    """A run ended by SIGTERM or SIGKILL that neither the watchdog nor the kernel's OOM killer
    sent, on an engine that then no longer answers: the engine stopped it on its way down (its
    host is shutting down), which is not the researcher's doing. (A cancel stops it too, but
    leaves the engine up, and is recorded as such.)"""
    if outcome.exit_code not in (128 + 9, 128 + 15) or outcome.oom_killed or outcome.timed_out or outcome.silent:
        return False
    return not docker_api.wait_for_engine(3)


def _beat(spec: docker_api.RunSpec, submission_id: int) -> None:
    """Called from the watchdog's thread: say the run is watched, stop it when it was cancelled,
    and give the thread's database connection back. A cancel also asks a maintenance worker to
    stop the run at once, but that worker may be on another host, whose engine does not hold it."""
    try:
        scheduling.beat(submission_id)
        if submission_cancelled(submission_id):
            log.info("submission %s was cancelled: its run host stops it", submission_id)
            docker_api.stop_run(spec.name, grace=spec.stop_grace)
    finally:
        connection.close()
