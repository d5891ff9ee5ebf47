"""E-mails to the researcher at every step a researcher cares about."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse

from m2d import mail
from submissions.logpolicy import researcher_log_view, researcher_reason

from .models import Submission
from .progress import QueueView, humanize_seconds

S = Submission.Status

SUBJECTS = {
    S.RECEIVED: "code received",
    S.QUEUED: "queued for execution",
    S.RUNNING: "execution started",
    S.SUCCEEDED: "execution finished",
    S.FAILED: "execution failed",
    S.TIMED_OUT: "execution timed out",
    S.CANCELLED: "cancelled",
}
# Which of the researcher's e-mail choices (accounts' MailStep) each status belongs to.
STEPS = {S.RECEIVED: "received", S.QUEUED: "queued", S.RUNNING: "started"}


def _wants(submission: Submission, status: str) -> bool:
    if not submission.owner.email:
        return False
    researcher = getattr(submission.owner, "researcher", None)
    return researcher is None or researcher.wants_mail(STEPS.get(status, "ended"))


def _queue_context(submission: Submission) -> dict:
    """Where the submission stands in the run queue now (it may already have left it)."""
    queue = QueueView()
    return {
        "queue_position": queue.position(submission),
        "wait": humanize_seconds(queue.estimated_wait_seconds(submission)),
        "still_queued": submission.status == S.QUEUED,
    }


def status_changed(submission_id: int, status: str) -> None:
    if status not in SUBJECTS:
        return
    submission = Submission.objects.select_related("owner__researcher").get(pk=submission_id)
    if not _wants(submission, status):
        return
    portal = settings.PORTAL_URL
    context = {
        "submission": submission,
        "status": status,
        "headline": SUBJECTS[status],
        "url": portal + reverse("submissions:detail", args=[submission.pk]),
        "account_url": portal + reverse("accounts:profile") if hasattr(submission.owner, "researcher") else "",
        "mlflow_url": settings.MLFLOW_PUBLIC_URL,
        # What of the logs a researcher may read is decided by the exports log policy alone.
        "reason": researcher_reason(submission),
        "log_view": researcher_log_view(submission, "run") or researcher_log_view(submission, "build"),
        **(_queue_context(submission) if status == S.QUEUED else {}),
    }
    # Made now, delivered by this process's outbox: the run slot that moved it goes on at once.
    mail.send(
        f"[M2D] Submission {submission.pk}: {SUBJECTS[status]}",
        "submissions/email/status",
        context,
        [submission.owner.email],
        background=True,
    )
