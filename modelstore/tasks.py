"""Celery tasks of the model store: thin, they call the services."""

from celery import shared_task

from . import services


@shared_task
def sweep_orphan_blobs() -> int:
    return len(services.model_blobs_sweep())
