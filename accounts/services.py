"""Every change to a researcher's account. Keyword-only, atomic, audited; MLflow calls after commit."""

from __future__ import annotations

import logging
import re

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from tracking.client import MlflowAdmin, MlflowUnavailable

from . import crypto
from .models import Researcher

log = logging.getLogger(__name__)
User = get_user_model()


class AccountError(ValueError):
    pass


def _mlflow_username_for(username: str) -> str:
    base = re.sub(r"[^a-z0-9._-]+", "-", username.lower()).strip("-.") or "researcher"
    candidate, n = base, 1
    while Researcher.objects.filter(mlflow_username=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


@transaction.atomic
def researcher_create(
    *, username: str, email: str, password: str | None = None, institution: str = "", intended_use: str = ""
) -> Researcher:
    if User.objects.filter(username=username).exists():
        raise AccountError(f"The username {username!r} is taken.")
    if email and User.objects.filter(email__iexact=email).exists():
        raise AccountError(f"An account with the e-mail address {email} exists already.")
    user = User.objects.create_user(username=username, email=email, password=password)
    if password is None:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return Researcher.objects.create(user=user, institution=institution, intended_use=intended_use)


def researcher_approve(*, by, researcher: Researcher, provision_now: bool = False) -> Researcher:
    """Approve and provision MLflow. Repeating it is harmless; a failed provisioning is retried
    by the reconciler until MLflow answers."""
    with transaction.atomic():
        researcher = Researcher.objects.select_for_update().get(pk=researcher.pk)
        if researcher.status != Researcher.Status.APPROVED:
            researcher.status = Researcher.Status.APPROVED
            researcher.decided_by = by
            researcher.decided_at = timezone.now()
            researcher.decision_reason = ""
        if not researcher.mlflow_username:
            researcher.mlflow_username = _mlflow_username_for(researcher.user.username)
            researcher.mlflow_password_encrypted = crypto.encrypt(crypto.generate_password())
        researcher.save()
        if not provision_now:
            transaction.on_commit(lambda: _provision_quietly(researcher.pk))
    if provision_now:
        mlflow_provision(researcher=researcher)
    researcher.refresh_from_db()
    return researcher


def _provision_quietly(researcher_id: int) -> None:
    try:
        mlflow_provision(researcher=Researcher.objects.get(pk=researcher_id))
    except MlflowUnavailable as exc:
        log.warning("MLflow provisioning of researcher %s postponed: %s", researcher_id, exc)


def mlflow_provision(*, researcher: Researcher) -> None:
    """Make MLflow match the researcher: a user with the stored password, an experiment named like
    the user, and EDIT on it for that user alone. Idempotent."""
    if researcher.status != Researcher.Status.APPROVED or not researcher.mlflow_username:
        return
    admin = MlflowAdmin()
    admin.ensure_user(researcher.mlflow_username, researcher.mlflow_password)
    experiment_id = admin.ensure_experiment(researcher.mlflow_experiment_name)
    admin.grant_experiment(researcher.mlflow_username, experiment_id)
    Researcher.objects.filter(pk=researcher.pk).update(
        mlflow_experiment_id=experiment_id, mlflow_provisioned_at=timezone.now()
    )


def provision_pending() -> int:
    """Retry provisioning of approved researchers MLflow has not seen yet (called periodically)."""
    done = 0
    for researcher in Researcher.objects.filter(status=Researcher.Status.APPROVED, mlflow_provisioned_at=None):
        try:
            mlflow_provision(researcher=researcher)
            done += 1
        except MlflowUnavailable as exc:
            log.warning("MLflow still unavailable for provisioning: %s", exc)
            break
    return done
