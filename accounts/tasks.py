"""Celery tasks of the accounts: thin, scheduled by beat."""

from celery import shared_task

from .services import provision_pending


@shared_task
def provision_mlflow() -> None:
    """Finish approvals whose MLflow user could not be made (MLflow was down)."""
    provision_pending()
