"""Brings MLflow in line with the researchers' rows: right after each change commits, and again
periodically for whatever MLflow missed while it was down.

A row says what MLflow should hold (approved: a user with the stored password, an experiment named
like the user, EDIT on it for that user alone; otherwise: no user). Each change bumps the row's
generation; a sync applies what it read and then marks that generation synced, only if no newer
change came in meanwhile. A sync that applied a stale row therefore never hides a newer change:
the newer change's own sync, or the next loop here, applies it on top."""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from tracking.client import MlflowAdmin, MlflowRefused, MlflowUnavailable

from . import crypto
from .models import AccountEvent, Researcher

log = logging.getLogger(__name__)
RESERVED_USERNAMES = {"admin", "root", "mlflow"}


def mlflow_username_for(username: str) -> str:
    base = re.sub(r"[^a-z0-9._-]+", "-", username.lower()).strip("-.") or "researcher"
    reserved = RESERVED_USERNAMES | {settings.MLFLOW_ADMIN_USERNAME.lower()}
    candidate, n = base, 1
    while candidate in reserved or Researcher.objects.filter(mlflow_username=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def sync(researcher_id: int) -> bool:
    """Make MLflow match the row. True once in sync; raises MlflowUnavailable when MLflow is down."""
    for _ in range(3):
        researcher = Researcher.objects.select_related("user").get(pk=researcher_id)
        generation = researcher.mlflow_generation
        if generation == researcher.mlflow_synced_generation:
            return True
        admin = MlflowAdmin()
        fields: dict = {}
        if researcher.status == Researcher.Status.APPROVED:
            name = researcher.mlflow_experiment_name
            admin.ensure_user(researcher.mlflow_username, researcher.mlflow_password)
            experiment_id = admin.ensure_experiment(
                name, claim=crypto.experiment_claim(name), known_id=researcher.mlflow_experiment_id
            )
            admin.grant_experiment(researcher.mlflow_username, experiment_id)
            fields["mlflow_experiment_id"] = experiment_id
            if researcher.mlflow_provisioned_at is None:
                fields["mlflow_provisioned_at"] = timezone.now()
                action = AccountEvent.Action.MLFLOW_PROVISIONED
            else:
                action = None  # a new password reached MLflow; the rotation is audited already
        else:
            if researcher.mlflow_username:
                admin.delete_user(researcher.mlflow_username)
            action = AccountEvent.Action.MLFLOW_REVOKED
        with transaction.atomic():
            moved = Researcher.objects.filter(pk=researcher_id, mlflow_generation=generation).update(
                mlflow_synced_generation=generation, **fields
            )
            if moved and action:
                AccountEvent.objects.create(researcher_id=researcher_id, action=action)
        if moved:
            return True
    return False


def sync_quietly(researcher_id: int) -> None:
    """After a commit: try now, and leave it to the periodic retry when MLflow cannot be reached."""
    try:
        sync(researcher_id)
    except MlflowUnavailable as exc:
        log.warning("MLflow is behind for researcher %s; it will be retried: %s", researcher_id, exc)
    except MlflowRefused:
        log.exception("MLflow refused to update researcher %s; an admin must look at it", researcher_id)


def out_of_sync():
    return Researcher.objects.exclude(mlflow_generation=F("mlflow_synced_generation"))


def provision_pending() -> int:
    """Retry every researcher MLflow is behind on (approvals, rotations, revocations)."""
    done = 0
    for researcher_id in out_of_sync().order_by("pk").values_list("pk", flat=True):
        try:
            done += sync(researcher_id)
        except MlflowUnavailable as exc:
            log.warning("MLflow is still unavailable: %s", exc)
            break
        except MlflowRefused:
            log.exception("MLflow refused to update researcher %s", researcher_id)
    return done
