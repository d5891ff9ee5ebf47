"""Celery tasks of serving: thin, they load and call serving.batch."""

from celery import shared_task
from django.conf import settings

from . import batch


@shared_task(acks_late=True)
def run_batch_job(job_id: int) -> None:
    batch.batch_job_run(job_id)


@shared_task
def wake_batch_jobs() -> None:
    batch.batch_jobs_wake(older_than=settings.M2D_BATCH_RESEND_SECONDS)
