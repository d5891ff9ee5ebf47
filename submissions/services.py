"""Every change to a submission: intake, cancel, and recording what the runner reports of its
builds and runs."""

from __future__ import annotations

import logging
import tempfile
import uuid
from typing import BinaryIO

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.template.defaultfilters import pluralize
from django.utils import timezone

from runner.dispatch import request_build, stop_run, wake_run_slots

from . import exits, intake, logpolicy, metrics, notifications
from .facts import BuildFacts, RunFacts, TrackingTotals
from .models import Submission, SubmissionEvent
from .progress import format_duration as duration
from .reasons import run_reason, size
from .transitions import TransitionConflict, transition

log = logging.getLogger(__name__)
S = Submission.Status
Stage = Submission.Stage


class SubmissionRefused(ValueError):
    """The researcher's upload or account cannot be accepted; the message says what to do."""


def intake_limits() -> intake.IntakeLimits:
    return intake.IntakeLimits(
        max_compressed_bytes=settings.M2D_MAX_UPLOAD_BYTES,
        max_uncompressed_bytes=settings.M2D_MAX_UNCOMPRESSED_BYTES,
        max_files=settings.M2D_MAX_FILES,
        allow_requirement_urls=settings.M2D_ALLOW_REQUIREMENT_URLS,
    )


def ensure_may_submit(user) -> None:
    researcher = getattr(user, "researcher", None)
    if researcher is None or not researcher.is_approved:
        raise SubmissionRefused("Only approved researchers can submit code. Your account is not approved (yet).")
    if not researcher.mlflow_provisioned_at:
        raise SubmissionRefused(
            "Your MLflow account is still being set up. Try again in a minute; if this persists, contact an admin."
        )


def submission_create(*, by, upload: BinaryIO, filename: str = "submission.zip") -> Submission:
    """Check the zip, store a normalised copy, record the submission and queue its build.

    Nothing is stored unless every check passes."""
    ensure_may_submit(by)
    waiting = Submission.objects.filter(
        owner=by, status__in=[Submission.Status.RECEIVED, Submission.Status.BUILDING, Submission.Status.QUEUED]
    ).count()
    if settings.M2D_MAX_QUEUED_PER_RESEARCHER and waiting >= settings.M2D_MAX_QUEUED_PER_RESEARCHER:
        raise SubmissionRefused(
            f"You have {waiting} submission{pluralize(waiting)} waiting, the most one researcher may have. "
            "Wait for some to start, or cancel the ones you no longer need."
        )
    size = getattr(upload, "size", None)
    if size is not None and size > settings.M2D_MAX_UPLOAD_BYTES:
        raise SubmissionRefused(
            f"The zip is {size / 1024**2:.0f} MB; the limit is {settings.M2D_MAX_UPLOAD_BYTES / 1024**2:.0f} MB. "
            "Leave data and model weights out: the data set is at /mnt/dataset during the run."
        )
    try:
        report = intake.inspect_zip(upload, intake_limits())
        upload.seek(0)
        with tempfile.TemporaryFile() as normalised:
            sha256 = intake.write_normalised_zip(upload, report, normalised)
            normalised.seek(0)
            return _record(by=by, report=report, archive=normalised, sha256=sha256, filename=filename)
    except intake.IntakeError as exc:
        raise SubmissionRefused(str(exc)) from exc


def _record(*, by, report, archive, sha256: str, filename: str) -> Submission:
    submission = Submission(
        owner=by,
        archive_sha256=sha256,
        original_name=filename[:255],
        requirements=report.requirements,
        warnings=list(report.warnings),
    )
    stored_name = None
    try:
        with transaction.atomic():
            submission.archive.save(f"{uuid.uuid4().hex}.zip", File(archive), save=False)
            stored_name = submission.archive.name
            submission.save()
            SubmissionEvent.objects.create(submission=submission, from_status="", to_status=Submission.Status.RECEIVED)
            transaction.on_commit(lambda: notifications.status_changed(submission.pk, Submission.Status.RECEIVED))
            transaction.on_commit(lambda: request_build(submission.pk))
    except BaseException:
        if stored_name:
            submission.archive.storage.delete(stored_name)
        raise
    return submission


def submission_cancel(*, by, submission: Submission, reason: str = "") -> Submission:
    """Cancel in any unfinished state. A running container is stopped by the runner once the
    cancellation has committed; a build in progress finds its submission cancelled and stops."""
    if not (by is None or by.is_staff or by.pk == submission.owner_id):
        raise SubmissionRefused("You can only cancel your own submissions.")
    for _ in range(3):  # the state may move under us (queued -> running); follow it
        submission.refresh_from_db()
        if submission.is_finished:
            raise SubmissionRefused(f"Submission {submission.pk} has already {submission.status}; nothing to cancel.")
        who = (
            "you"
            if by is not None and by.pk == submission.owner_id
            else "an admin"
            if by is not None
            else "the platform"
        )
        try:
            with transaction.atomic():
                was_running = submission.status == Submission.Status.RUNNING
                transition(
                    submission,
                    Submission.Status.CANCELLED,
                    reason=reason or f"Cancelled by {who}.",
                    note=f"cancelled by {getattr(by, 'username', 'the platform')}",
                )
                if was_running:
                    transaction.on_commit(lambda: stop_run(submission.pk))
            return submission
        except TransitionConflict:
            continue
    raise SubmissionRefused(f"Submission {submission.pk} is changing state right now; try again.")


# --- what the runner reports ---------------------------------------------------------------------


def submission_settle(*, submission: Submission, to: str, **fields) -> bool:
    """Move to an outcome unless someone (a cancel, the reconciler) settled it first."""
    try:
        transition(submission, to, **fields)
        return True
    except TransitionConflict:
        submission.refresh_from_db()
        log.info("submission %s was %s before it could become %s", submission.pk, submission.status, to)
        return False


def submission_fail(*, submission: Submission, stage: str, reason: str, **fields) -> bool:
    return submission_settle(
        submission=submission, to=S.FAILED, failure_stage=stage, reason=reason[:4000], note=reason[:500], **fields
    )


def _platform_lost(submission: Submission, reason: str, **fields) -> None:
    """A fault of the platform, not of the code: requeue it (a limited number of times), else fail
    it at stage infrastructure. Neither counts against the researcher."""
    retries = submission.infrastructure_retries
    if retries < settings.M2D_INFRASTRUCTURE_RETRIES:
        if submission_settle(
            submission=submission,
            to=S.QUEUED,
            infrastructure_retries=retries + 1,
            note=f"{reason}; requeued",
            **{k: v for k, v in fields.items() if k != "metrics"},
        ):
            transaction.on_commit(wake_run_slots)
        return
    submission_fail(submission=submission, stage=Stage.INFRASTRUCTURE, reason=reason, **fields)


def run_lost_record(*, submission_id: int, reason: str) -> Submission:
    """The platform could not start a claimed run (no export volume, no image on the slot's host)."""
    submission = Submission.objects.get(pk=submission_id)
    _platform_lost(submission, reason, expected=S.RUNNING)
    return submission


def run_tracking_reserve(*, submission_id: int) -> exits.TrackingAllowance:
    """What a run's tracking gateway may let it send from now on, reserved from the exit budget."""
    return exits.reserve_tracking(Submission.objects.get(pk=submission_id))


def run_tracking_usage_record(*, submission_id: int, totals: TrackingTotals) -> None:
    """A running gateway's totals so far: a worker that dies mid-run loses at most the last second."""
    Submission.objects.filter(pk=submission_id).update(
        tracking_calls=totals.calls, tracking_bytes=totals.bytes_sent, tracking_bytes_received=totals.bytes_received
    )


def build_begin(*, submission_id: int) -> bool:
    """Take a received submission into its build; False when it is not (or no longer) waiting for one
    (a duplicate message, a cancel that came first)."""
    submission = Submission.objects.get(pk=submission_id)
    if submission.status != S.RECEIVED:
        return False
    try:
        transition(submission, S.BUILDING, heartbeat_at=timezone.now())
    except TransitionConflict:
        return False
    return True


def build_facts_record(*, facts: BuildFacts) -> bool:
    """Record how a build ended; True when the submission is queued with its image (False: it was
    cancelled or settled meanwhile, and the image is not wanted)."""
    submission = Submission.objects.get(pk=facts.submission_id)
    tail = {"build_log_tail": facts.log_tail} if facts.log_tail else {}
    if facts.cancelled or submission.status != S.BUILDING:
        return False  # cancelled, or settled by the reconciler while it built
    if facts.timed_out:
        submission_settle(submission=submission, to=S.TIMED_OUT, failure_stage=Stage.BUILD, reason=facts.reason, **tail)
        return False
    if facts.failure_stage:
        submission_fail(submission=submission, stage=facts.failure_stage, reason=facts.reason, **tail)
        return False
    queued = submission_settle(submission=submission, to=S.QUEUED, image_id=facts.image_id, **tail)
    if queued:
        transaction.on_commit(wake_run_slots)
    return queued


def run_facts_record(*, facts: RunFacts) -> Submission:
    """Record how a run ended: the exit budget's charges, what the researcher will see of its
    output, its metrics, and its outcome, moved through the transitions. Returns the submission as
    it stands afterwards (someone may have settled it first; a lost run is queued again)."""
    submission = Submission.objects.select_related("owner").get(pk=facts.submission_id)
    totals = facts.tracking
    exits.settle_tracking(submission.pk, submission.owner_id, totals.bytes_sent)
    # What the researcher will ever see of the run's output: the capped tail, within their exit
    # budget, charged once; the reason quotes only from it.
    log_tail = exits.charge_log_tail(submission, logpolicy.cap(facts.log_tail)[0])
    common = {
        # The run's facts move it on from running: whoever moved it meanwhile (a cancel, the
        # reconciler) came first, and the move conflicts instead.
        "expected": S.RUNNING,
        "run_log_tail": log_tail,
        "tracking_calls": totals.calls,
        "tracking_bytes": totals.bytes_sent,
        "tracking_bytes_received": totals.bytes_received,
        # The history is final now that the gateway is closed: read it once, and keep it.
        "metrics": read.final if (read := metrics.collect(submission)) is not None else {},
    }
    exit_code = facts.exit_code
    if facts.fault:
        _platform_lost(submission, f"The platform lost the run: {facts.fault}", **common)
    elif facts.export_problem:
        submission_fail(
            submission=submission, stage=Stage.EXPORT, reason=facts.export_problem, exit_code=exit_code, **common
        )
    elif facts.timed_out or facts.silent:
        reason = (
            f"timed_out after {duration(settings.M2D_RUN_TIMEOUT)} (the run time limit)"
            if facts.timed_out
            else f"timed_out: no output for {duration(settings.M2D_RUN_SILENCE_TIMEOUT)}, so the run was "
            "stopped. Print progress regularly; a hung data loader or a deadlock looks like this."
        )
        submission_settle(
            submission=submission,
            to=S.TIMED_OUT,
            failure_stage=Stage.RUN,
            exit_code=exit_code,
            reason=reason,
            **common,
        )
    elif facts.oom_killed:
        reason = (
            f"out of memory at {size(settings.M2D_RUN_MEMORY)}: the run used all the memory it may use "
            "and was stopped. Use smaller batches or a smaller model."
        )
        submission_fail(
            submission=submission, stage=Stage.RUN, reason=reason, exit_code=exit_code, oom_killed=True, **common
        )
    elif exit_code == 0:
        submission_settle(submission=submission, to=S.SUCCEEDED, exit_code=0, **common)
    else:
        submission_fail(
            submission=submission,
            stage=Stage.RUN,
            reason=run_reason(exit_code, log_tail),
            exit_code=exit_code,
            **common,
        )
    return submission
