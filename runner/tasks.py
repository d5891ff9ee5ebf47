"""Celery tasks: thin wrappers that load and call the pipeline. Others send them by name
(runner.dispatch), so nothing outside the runner imports it."""

from celery import shared_task
from django.conf import settings

from . import assessment, builds, docker_api, naming, pipeline, reconciler, serving, worker_signals  # noqa: F401 - signal handlers


@shared_task(acks_late=True)
def build_submission(submission_id: int) -> None:
    builds.build(submission_id)


@shared_task(bind=True, acks_late=True)
def wake_run_slots(self, passed_on: bool = False) -> None:
    pipeline.wake(self.request.hostname, passed_on=passed_on)


@shared_task
def reconcile() -> None:
    reconciler.reconcile()


@shared_task(acks_late=True)
def stop_cancelled_run(submission_id: int) -> None:
    docker_api.stop_run(naming.container_name(submission_id), grace=settings.M2D_STOP_GRACE_SECONDS)


@shared_task
def reconcile_serving() -> None:
    serving.reconcile()


@shared_task(acks_late=True)
def assess_disclosure(submission_id: int) -> None:
    assessment.assess(submission_id)
