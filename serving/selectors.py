"""Reads of deployments and workers."""

from __future__ import annotations

from .models import Deployment, ServeWorker

LIVE = (ServeWorker.State.STARTING, ServeWorker.State.READY)


def deployment_of(version) -> Deployment | None:
    return Deployment.objects.filter(version=version).first()


def ready_workers(version) -> list[ServeWorker]:
    return list(ServeWorker.objects.filter(deployment__version=version, state=ServeWorker.State.READY))


def live_workers(deployment: Deployment) -> list[ServeWorker]:
    return list(deployment.workers.filter(state__in=LIVE))


def deployments_to_reconcile():
    return Deployment.objects.select_related("version__submission", "version__model").order_by("pk")


def worker_counts(deployment: Deployment) -> dict[str, int]:
    counts = {state: 0 for state in ServeWorker.State.values}
    for state in deployment.workers.values_list("state", flat=True):
        counts[state] += 1
    return counts
