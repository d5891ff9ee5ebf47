"""Reads of deployments and workers."""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .errors import WorkersBusy
from .models import Deployment, Prediction, ServeWorker

LIVE = (ServeWorker.State.STARTING, ServeWorker.State.READY)
# A prediction's status while its worker has not answered: the audit row is written before the
# worker is asked. One still without an answer past the response timeout and this margin was
# interrupted (its gateway process was killed or restarted): nobody will complete it.
NO_ANSWER_YET = 0
INTERRUPTED_MARGIN_SECONDS = 10
# Time for a scale's message to reach the reconciler, on top of the workers' own startup time.
SCALE_MARGIN_SECONDS = 60


def deployment_of(version) -> Deployment | None:
    return Deployment.objects.filter(version=version).first()


def ready_workers(version) -> list[ServeWorker]:
    return list(ServeWorker.objects.filter(deployment__version=version, state=ServeWorker.State.READY))


def live_workers(deployment: Deployment) -> list[ServeWorker]:
    return list(deployment.workers.filter(state__in=LIVE))


def deployments_to_reconcile():
    return Deployment.objects.select_related("version__submission", "version__model").order_by("pk")


def interrupted_before():
    """Predictions without an answer from before this time were interrupted."""
    return timezone.now() - timedelta(seconds=settings.M2D_SERVE_RESPONSE_TIMEOUT + INTERRUPTED_MARGIN_SECONDS)


def prediction_state(prediction: Prediction, cutoff=None) -> str:
    """answered (its status says how: 200, or a refusal), in flight, or interrupted; `cutoff` is
    interrupted_before(), for a reader of many rows."""
    if prediction.status != NO_ANSWER_YET:
        return "answered"
    return "interrupted" if prediction.at < (cutoff or interrupted_before()) else "in flight"


def refused_busy_since(deployment: Deployment, since) -> bool:
    """Whether requests to the version were refused because every worker was busy, since then and
    since its newest worker was ready (the refusals that started it count once)."""
    newest = deployment.workers.exclude(ready_at=None).order_by("-ready_at").values_list("ready_at", flat=True).first()
    since = max(since, newest) if newest else since
    return Prediction.objects.filter(
        version_id=deployment.version_id, status=503, at__gte=since, error__startswith=WorkersBusy.prefix
    ).exists()


def idle_since(deployment: Deployment, since) -> bool:
    """Whether the version has had no request, no new worker and no new scale since then, and has
    no request in flight (one asked earlier that a worker still answers; not an interrupted one)."""
    recent_or_in_flight = Q(at__gte=since) | Q(status=NO_ANSWER_YET, at__gte=interrupted_before())
    return not (
        deployment.updated_at >= since
        or Prediction.objects.filter(recent_or_in_flight, version_id=deployment.version_id).exists()
        or deployment.workers.filter(ready_at__gte=since).exists()
    )


def scale_in_progress(deployment: Deployment) -> str:
    """What the deployment's last scale is still doing ('' once it is over). A scale is over when
    its counts are reached, when a worker has failed since it was asked (the deployment's state
    and events tell the rest), or when its workers have had their startup time and a margin."""
    asked = deployment.updated_at
    took_too_long = asked + timedelta(
        seconds=settings.M2D_SERVE_STARTUP_TIMEOUT * max(1, deployment.min_workers) + SCALE_MARGIN_SECONDS
    )
    if timezone.now() > took_too_long:
        return ""
    counts = worker_counts(deployment)
    ready, live = counts[ServeWorker.State.READY], counts[ServeWorker.State.READY] + counts[ServeWorker.State.STARTING]
    if ready >= deployment.min_workers and live <= max(deployment.max_workers, deployment.min_workers):
        return ""
    if deployment.workers.filter(state=ServeWorker.State.FAILED, ended_at__gte=asked).exists():
        return ""
    return (
        f"{ready} of {deployment.min_workers} workers ready"
        if ready < deployment.min_workers
        else f"{live - deployment.max_workers} of {live} workers to stop"
    )


def worker_counts(deployment: Deployment) -> dict[str, int]:
    counts = {state: 0 for state in ServeWorker.State.values}
    for state in deployment.workers.values_list("state", flat=True):
        counts[state] += 1
    return counts


def deployment_description(version) -> dict | None:
    """TorchServe's describe fields of a version's deployment: worker counts and each worker."""
    deployment = deployment_of(version)
    if deployment is None:
        return None
    return {
        "min_workers": deployment.min_workers,
        "max_workers": deployment.max_workers,
        "last_cold_start_seconds": deployment.last_cold_start_seconds,
        "state": deployment.state,
        "gpu": deployment.gpu,
        "workers": [
            {"id": w.pk, "status": w.state, "started_at": w.started_at, "ready_at": w.ready_at, "slot": w.slot}
            for w in deployment.workers.filter(state__in=LIVE)
        ],
    }


def wait_ready_count(deployment: Deployment, timeout: float) -> int:
    """Ready workers of a deployment, waiting up to `timeout` seconds for min_workers of them."""
    deadline = time.monotonic() + timeout
    while True:
        ready = deployment.workers.filter(state=ServeWorker.State.READY).count()
        if ready >= deployment.min_workers or time.monotonic() >= deadline:
            return ready
        time.sleep(0.25)
