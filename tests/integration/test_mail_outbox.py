"""Submission e-mails leave through the process's outbox: a mail server that is slow to answer
never holds up the process that moved the submission (a run slot goes on to its next job), and
the mails still arrive, in the order they were written. Every mail is stored until the mail
server took it: a mail server that was down, or a process that died with mails in its outbox,
delays mails but loses none."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from email import message_from_bytes

import pytest
from django.utils import timezone

from accounts.models import MailStep, Researcher
from accounts.services import researcher_create
from ops.models import MailFailure, OutgoingMail
from ops.outbox import send_due
from submissions import notifications
from submissions.models import Submission
from tests.conftest import REPO, _worker_database_url, free_port

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


def finished_submission(prefix: str) -> Submission:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    researcher = researcher_create(username=name, email=f"{name}@example.org", password=f"pw-{name}-{name}")
    # Mailed at every step (ticked on the account page): these tests are about the outbox, not the choice.
    Researcher.objects.filter(pk=researcher.pk).update(
        status=Researcher.Status.APPROVED, email_steps=list(MailStep.values)
    )
    return Submission.objects.create(
        owner=researcher.user, status=S.SUCCEEDED, archive="x.zip", archive_sha256="0" * 64, metrics={"auc": 0.9}
    )


def wait_until(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return found


def test_a_slow_mail_server_holds_up_nobody(transactional_db, held_server):
    submission = finished_submission("otto")

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
    assert OutgoingMail.objects.count() == 0  # taken by the server: nothing left stored


def test_a_mail_the_server_did_not_take_is_sent_once_it_is_back(transactional_db, settings, mailbox):
    settings.EMAIL_BACKEND = "ops.mail.MeteredEmailBackend"
    settings.M2D_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_PORT = free_port()  # nothing listens: the mail server is down
    submission = finished_submission("petra")
    address = submission.owner.email

    notifications.status_changed(submission.pk, S.SUCCEEDED)

    stored = wait_until(lambda: OutgoingMail.objects.filter(attempts=1).exclude(last_error="").first())
    assert stored.subject == f"[M2D] Submission {submission.pk}: execution finished"
    assert "Connection refused" in stored.last_error
    assert stored.due_at > timezone.now() + timedelta(seconds=30)  # the next try waits a while
    assert MailFailure.objects.filter(recipients=address).count() == 1  # counted for /metrics and the admin
    assert send_due() == 0  # not due yet: nothing tried

    settings.EMAIL_PORT = mailbox.port  # the mail server is back...
    OutgoingMail.objects.update(due_at=timezone.now())  # ...and the pause is over
    assert send_due() == 1
    [mail] = mailbox.wait_for(address, 1)
    assert mail["Subject"] == f"[M2D] Submission {submission.pk}: execution finished"
    assert "auc" in mail.get_payload()[0].get_payload(decode=True).decode()
    assert OutgoingMail.objects.count() == 0


def test_a_mail_whose_process_died_is_sent_by_the_scheduled_task(transactional_db, settings, mailbox, celery_workers):
    """A process writes "execution started" and dies (kill -9) while its outbox waits on a mail
    server that never answers; the scheduled task on a real worker sends the mail, once."""
    from m2d.celery import app

    submission = finished_submission("quentin")
    address = submission.owner.email
    silent = socket.socket()  # takes connections, never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    script = (
        "from submissions import notifications; "
        f"notifications.status_changed({submission.pk}, 'running'); "
        "print('written', flush=True); import time; time.sleep(300)"
    )
    env = {
        **os.environ,
        "DATABASE_URL": _worker_database_url(),
        "EMAIL_URL": f"smtp://127.0.0.1:{silent.getsockname()[1]}",
        "M2D_MAIL_LEASE_SECONDS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", script],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "written"
        wait_until(lambda: OutgoingMail.objects.filter(attempts=1).exists())  # its outbox is sending it
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        silent.close()
    assert mailbox.for_address(address) == []
    wait_until(lambda: OutgoingMail.objects.get().due_at <= timezone.now())  # its lease (1 s) ran out

    entry = settings.CELERY_BEAT_SCHEDULE["send-due-mail"]
    assert entry["task"] == "ops.tasks.send_due_mail" and entry["options"]["queue"] == settings.M2D_QUEUE_OPS
    app.send_task(entry["task"], queue=entry["options"]["queue"])

    [mail] = mailbox.wait_for(address, 1)
    assert mail["Subject"] == f"[M2D] Submission {submission.pk}: execution started"
    wait_until(lambda: not OutgoingMail.objects.exists())
    time.sleep(1)
    assert len(mailbox.for_address(address)) == 1
