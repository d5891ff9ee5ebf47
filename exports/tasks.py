"""Celery tasks of the airlock: thin, they call the services."""

from celery import shared_task

from . import services


@shared_task
def expire_exports() -> dict[str, int]:
    return services.export_expire_due()
