"""An e-mail backend that hands every message to the configured one and records each failure.

Callers decide what a failure means to them (the pipeline shrugs it off so a mail outage never
stops a run); this backend only makes sure the failure is counted for `/metrics` and shown in the
admin before the exception goes on its way.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import get_connection
from django.core.mail.backends.base import BaseEmailBackend

from .models import MailFailure

log = logging.getLogger(__name__)


class MeteredEmailBackend(BaseEmailBackend):
    def __init__(self, fail_silently: bool = False, **kwargs):
        super().__init__(fail_silently=fail_silently)
        self._kwargs = kwargs
        self._inner = None

    def _connection(self):
        # Made on first use, so a backend that cannot even be set up (an unwritable mail folder)
        # counts as a failed send like any other.
        if self._inner is None:
            self._inner = get_connection(settings.M2D_EMAIL_BACKEND, fail_silently=False, **self._kwargs)
        return self._inner

    def open(self):
        return self._connection().open()

    def close(self):
        if self._inner is not None:
            self._inner.close()

    def send_messages(self, email_messages) -> int:
        try:
            return self._connection().send_messages(email_messages)
        except Exception as exc:
            _record(email_messages, exc)
            if not self.fail_silently:
                raise
            return 0


def _record(email_messages, exc: Exception) -> None:
    try:
        MailFailure.objects.bulk_create(
            MailFailure(
                subject=str(message.subject)[:300],
                recipients=", ".join(message.recipients()),
                error=f"{type(exc).__name__}: {exc}"[:2000],
            )
            for message in email_messages
        )
    except Exception:  # the database may be what is down; the log line still tells
        log.exception("could not record an e-mail failure (%s)", exc)
