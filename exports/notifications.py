"""E-mails about exports to the people concerned: the owner, and the admins who review."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import reverse

from m2d import mail

from .models import Export, ExportEvent

A = ExportEvent.Action

# Downloads are on the audit trail, not mailed: only the owner may download, and knows it did.
OWNER_SUBJECTS = {
    A.REQUESTED: "release requested",
    A.CANCELLED: "release request cancelled",
    A.EXPIRY_WARNED: "exported files expire soon",
    A.EXPIRED: "exported files deleted",
    A.MODEL_REGISTERED: "model registered",
}
ADMIN_SUBJECTS = {A.REQUESTED: "export waiting for review", A.CANCELLED: "release request withdrawn"}


def _admins(excluding=()) -> list:
    users = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    return list(users.exclude(pk__in=[pk for pk in excluding if pk]).select_related("researcher").order_by("email"))


def _urls(export_or_submission_id: int, export: Export | None) -> dict:
    portal = settings.PORTAL_URL
    urls = {"submission_url": portal + reverse("submissions:detail", args=[export_or_submission_id])}
    if export is not None:
        urls["review_url"] = portal + reverse("exports:review", args=[export.pk])
    return urls


def event_happened(event_id: int) -> None:
    event = ExportEvent.objects.select_related("submission__owner", "by", "file").get(pk=event_id)
    submission = event.submission
    export = getattr(submission, "export", None)
    context = {"event": event, "submission": submission, "export": export, **_urls(submission.pk, export)}
    prefix = f"[M2D] Submission {submission.pk}: "
    if event.action in OWNER_SUBJECTS and submission.owner.email:
        mail.send(
            prefix + OWNER_SUBJECTS[event.action],
            "exports/email/owner",
            {**context, "audience": "owner"},
            [submission.owner.email],
        )
    if event.action in ADMIN_SUBJECTS:
        mail.send_each(
            prefix + ADMIN_SUBJECTS[event.action],
            "exports/email/admins",
            context,
            _admins(excluding=[submission.owner_id]),
        )


def review_done(export_id: int, reviewer_id: int, outcome: dict[str, list[str]], comment: str) -> None:
    export = Export.objects.select_related("submission__owner").get(pk=export_id)
    submission = export.submission
    context = {"export": export, "submission": submission, "outcome": outcome, "comment": comment}
    context.update(_urls(submission.pk, export))
    prefix = f"[M2D] Submission {submission.pk}: "
    researcher = getattr(submission.owner, "researcher", None)
    wanted = researcher is None or researcher.wants_mail("decisions")  # the owner's choice (accounts' MailStep)
    if (outcome["released"] or outcome["rejected"]) and submission.owner.email and wanted:
        subject = "files released" if outcome["released"] else "files rejected"
        mail.send(prefix + subject, "exports/email/decision", context, [submission.owner.email])
    if outcome["approved"]:
        mail.send_each(
            prefix + "a second admin must approve the release",
            "exports/email/second_approval",
            context,
            _admins(excluding=[submission.owner_id, reviewer_id]),
        )
