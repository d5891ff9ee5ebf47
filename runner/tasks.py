"""Celery tasks: thin wrappers that load and call the pipeline."""

from celery import shared_task

from . import builds, pipeline, worker_signals  # noqa: F401 - connects the worker's signal handlers


@shared_task(acks_late=True)
def build_submission(submission_id: int) -> None:
    builds.build(submission_id)


@shared_task(acks_late=True)
def wake_run_slots() -> None:
    pipeline.run_queued()


@shared_task
def reconcile() -> None:
    from accounts.services import provision_pending

    provision_pending()
    from .reconciler import reconcile as run_reconciler

    run_reconciler()


@shared_task(acks_late=True)
def stop_cancelled_run(submission_id: int) -> None:
    from django.conf import settings

    from . import docker_api, naming

    docker_api.stop_run(naming.container_name(submission_id), grace=settings.M2D_STOP_GRACE_SECONDS)
