"""E-mails about accounts: to the approvers when someone is waiting, to the researcher on each decision."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import reverse

from m2d import mail

from .models import Researcher

log = logging.getLogger(__name__)

DECISION_SUBJECTS = {
    Researcher.Status.APPROVED: "your account is approved",
    Researcher.Status.REJECTED: "your application was not approved",
    Researcher.Status.DISABLED: "your account was disabled",
}


def approver_addresses() -> list[str]:
    if settings.M2D_APPROVER_EMAILS:
        return list(settings.M2D_APPROVER_EMAILS)
    staff = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    return sorted(set(staff.values_list("email", flat=True)))


def _send(subject: str, template: str, context: dict, recipients: list[str]) -> None:
    if not recipients:
        log.warning("no recipient for %r", subject)
        return
    # A mail outage must not undo or block a decision that has committed: send() only logs it.
    mail.send(f"[M2D] {subject}", template, {**context, "portal_url": settings.PORTAL_URL}, recipients)


def approvers_someone_waiting(researcher_id: int) -> None:
    researcher = Researcher.objects.select_related("user").get(pk=researcher_id)
    review_url = settings.PORTAL_URL + reverse("admin:accounts_researcher_change", args=[researcher.pk])
    _send(
        f"{researcher.display_name} is waiting for approval",
        "accounts/email/waiting",
        {"researcher": researcher, "review_url": review_url},
        approver_addresses(),
    )


def researcher_decided(researcher_id: int) -> None:
    researcher = Researcher.objects.select_related("user").get(pk=researcher_id)
    if researcher.status not in DECISION_SUBJECTS or not researcher.user.email:
        return
    _send(
        DECISION_SUBJECTS[researcher.status],
        f"accounts/email/{researcher.status}",
        {
            "researcher": researcher,
            "account_url": settings.PORTAL_URL + reverse("accounts:profile"),
            "mlflow_url": settings.MLFLOW_PUBLIC_URL,
        },
        [researcher.user.email],
    )
