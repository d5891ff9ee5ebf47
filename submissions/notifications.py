"""E-mails to the researcher at every step a researcher cares about."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from exports.logpolicy import researcher_log_view, researcher_reason

from .models import Submission

log = logging.getLogger(__name__)
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


def status_changed(submission_id: int, status: str) -> None:
    if status not in SUBJECTS:
        return
    submission = Submission.objects.select_related("owner").get(pk=submission_id)
    if not submission.owner.email:
        return
    context = {
        "submission": submission,
        "status": status,
        "subject": SUBJECTS[status],
        "url": settings.PORTAL_URL + reverse("submissions:detail", args=[submission.pk]),
        "mlflow_url": settings.MLFLOW_PUBLIC_URL,
        # What of the logs a researcher may read is decided by the exports log policy alone.
        "reason": researcher_reason(submission),
        "log_view": researcher_log_view(submission, "run") or researcher_log_view(submission, "build"),
    }
    subject = f"[M2D] Submission {submission.pk}: {SUBJECTS[status]}"
    body = render_to_string("submissions/email/status.txt", context)
    try:
        send_mail(subject, body, None, [submission.owner.email])
    except Exception:  # a mail outage must never break the pipeline
        log.exception("could not send the %s e-mail for submission %s", status, submission_id)
