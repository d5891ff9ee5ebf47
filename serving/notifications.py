"""The one e-mail of serving: a deployment became degraded. Its owner and the admins get it."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import reverse

from m2d import mail

from .models import Deployment


def deployment_degraded(deployment_id: int, reason: str) -> None:
    deployment = Deployment.objects.select_related("version__model__owner").get(pk=deployment_id)
    version = deployment.version
    admins = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    owner = version.model.owner
    recipients = [owner, *admins.exclude(pk=owner.pk).order_by("email")]
    mail.send_each(
        f"[M2D] {version.model.name} version {version.number} is degraded",
        "serving/email/degraded",
        {
            "model": version.model.name,
            "version": version.number,
            "failures": deployment.failures_in_a_row,
            "reason": reason.strip().splitlines()[0][:500] if reason.strip() else "unknown",
            "max_pause": f"{settings.M2D_SERVE_RESTART_BACKOFF_MAX:g}",
            "next_start_at": deployment.next_start_at,
            "model_url": settings.PORTAL_URL + reverse("modelstore:model", args=[version.model.name]),
        },
        recipients,
    )
