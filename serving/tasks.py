"""Celery tasks of serving: thin, they load and call serving.batch."""

from celery import shared_task

from . import batch


@shared_task(acks_late=True)
def run_batch_job(job_id: int) -> None:
    batch.batch_job_run(job_id)
