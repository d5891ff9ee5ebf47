"""Every change to a submission that does not belong to the runner: intake and cancel."""

from __future__ import annotations

import logging
import tempfile
import uuid
from typing import BinaryIO

from django.conf import settings
from django.core.files import File
from django.db import transaction

from runner.dispatch import request_build, stop_run

from . import intake, notifications
from .models import Submission, SubmissionEvent
from .transitions import TransitionConflict, transition

log = logging.getLogger(__name__)


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
            f"You have {waiting} submissions waiting, the most one researcher may have. "
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
