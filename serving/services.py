"""Writes of serving: scaling a deployment, the workers' lifecycle as the runner reports it, and
the audit row of every prediction."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from modelstore.models import ModelVersion
from runner.dispatch import reconcile_serving

from .errors import InvalidScale, NotServable
from .models import Deployment, DeploymentEvent, Prediction, ServeWorker


def deployment_scale(*, by, version: ModelVersion, min_workers: int, max_workers: int | None = None) -> Deployment:
    """Ask for between `min_workers` and `max_workers` workers of a version; the reconciler starts
    and stops containers to follow."""
    max_workers = min_workers if max_workers is None else max_workers
    if min_workers < 0 or max_workers < 0:
        raise InvalidScale("min_worker and max_worker are counts: 0 or more.")
    if max_workers < min_workers:
        raise InvalidScale("max_worker cannot be less than min_worker.")
    if max_workers > settings.M2D_SERVE_MAX_WORKERS:
        raise InvalidScale(
            f"max_worker is at most {settings.M2D_SERVE_MAX_WORKERS} on this platform (M2D_SERVE_MAX_WORKERS)."
        )
    if version.state != ModelVersion.State.REGISTERED and min_workers:
        raise NotServable(f"{version.model.name} version {version.number} is retired; it cannot be served.")
    with transaction.atomic():
        deployment, _ = Deployment.objects.select_for_update().get_or_create(version=version)
        deployment.min_workers, deployment.max_workers, deployment.updated_by = min_workers, max_workers, by
        deployment.save()
        DeploymentEvent.objects.create(
            deployment=deployment, by=by, comment=f"scaled to {min_workers}–{max_workers} workers"
        )
        transaction.on_commit(reconcile_serving)
    return deployment


def worker_begin(*, deployment: Deployment) -> ServeWorker:
    return ServeWorker.objects.create(deployment=deployment)


def worker_ready(*, worker: ServeWorker, container: str, seconds: float) -> None:
    ServeWorker.objects.filter(pk=worker.pk, state=ServeWorker.State.STARTING).update(
        state=ServeWorker.State.READY, container=container, ready_at=timezone.now()
    )
    Deployment.objects.filter(pk=worker.deployment_id).update(last_cold_start_seconds=seconds)


def worker_end(*, worker: ServeWorker, failed: bool, reason: str) -> None:
    state = ServeWorker.State.FAILED if failed else ServeWorker.State.STOPPED
    ServeWorker.objects.filter(pk=worker.pk).exclude(
        state__in=(ServeWorker.State.FAILED, ServeWorker.State.STOPPED)
    ).update(state=state, ended_at=timezone.now(), reason=reason[:2000])
    if failed:
        DeploymentEvent.objects.create(
            deployment_id=worker.deployment_id, comment=f"worker {worker.pk} failed: {reason[:500]}"
        )


def prediction_record(**fields) -> Prediction:
    return Prediction.objects.create(**fields)
