"""Audit rows for the airlock, and the mail that goes with each, sent once the step has committed."""

from __future__ import annotations

from django.db import transaction

from . import notifications
from .models import ExportEvent


def record(submission, action: str, *, by=None, file=None, comment: str = "", mail: bool = True) -> ExportEvent:
    event = ExportEvent.objects.create(
        submission=submission,
        action=action,
        by=by,
        file=file,
        path=file.display_path if file is not None else "",
        comment=comment,
    )
    if mail:
        transaction.on_commit(lambda: notifications.event_happened(event.pk))
    return event
