"""Submission e-mails leave through the process's outbox: a mail server that is slow to answer
never holds up the process that moved the submission (a run slot goes on to its next job), and
the mails still arrive, in the order they were written."""

from __future__ import annotations

import asyncio
import threading
import uuid
from email import message_from_bytes

import pytest

from accounts.models import Researcher
from accounts.services import researcher_create
from submissions import notifications
from submissions.models import Submission
from tests.conftest import free_port

S = Submission.Status


class HeldServer:
    """An SMTP server that takes each mail in but answers only once it is let go."""

    def __init__(self):
        self.release = threading.Event()
        self.received: list = []

    async def handle_DATA(self, server, session, envelope):
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait)
        self.received.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def held_server(settings):
    from aiosmtpd.controller import Controller

    held = HeldServer()
    controller = Controller(held, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", controller.port, False
    yield held
    held.release.set()
    controller.stop()


def test_a_slow_mail_server_holds_up_nobody(transactional_db, held_server):
    name = f"otto-{uuid.uuid4().hex[:6]}"
    researcher = researcher_create(username=name, email=f"{name}@example.org", password=f"pw-{name}-{name}")
    Researcher.objects.filter(pk=researcher.pk).update(status=Researcher.Status.APPROVED)
    submission = Submission.objects.create(
        owner=researcher.user, status=S.SUCCEEDED, archive="x.zip", archive_sha256="0" * 64, metrics={"auc": 0.9}
    )

    for status in (S.RUNNING, S.SUCCEEDED):
        notifications.status_changed(submission.pk, status)  # returns while the server holds the first

    assert held_server.received == []
    held_server.release.set()
    for _ in range(300):
        if len(held_server.received) == 2:
            break
        threading.Event().wait(0.1)
    assert [m["Subject"] for m in held_server.received] == [
        f"[M2D] Submission {submission.pk}: execution started",
        f"[M2D] Submission {submission.pk}: execution finished",
    ]
