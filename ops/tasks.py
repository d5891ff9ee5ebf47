"""Celery tasks of operations."""

from celery import shared_task

from .outbox import send_due


@shared_task
def send_due_mail() -> None:
    """Send the stored mails that are due: those the mail server did not take, and those whose
    sending process died (ops.outbox)."""
    send_due()
