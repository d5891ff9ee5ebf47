"""The platform's outbox: every e-mail is stored first, then sent, and removed once the mail
server took it. What was not sent (its process died, the mail server was down or refused) is
sent again by a scheduled task (ops.tasks.send_due_mail), with growing pauses, until it goes or
`M2D_MAIL_RETRY_HOURS` pass.

A mail is sent by one sender at a time: the process that wrote it, through its outbox thread, or
after `M2D_MAIL_LEASE_SECONDS` the scheduled task. A sender that dies after the mail server took a
mail but before it was removed sends that mail twice; none is lost.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from .models import OutgoingMail

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
# At exit, how long the outbox thread may still take to send what it holds.
DRAIN_SECONDS = 15.0
# The longest pause between two attempts at one mail.
MAX_PAUSE_SECONDS = 3600


def post(subject: str, text: str, html: str, recipients: list[str], *, background: bool) -> bool:
    """Store the mail and send it: now, or with `background` through this process's outbox
    thread once the caller's transaction commits. True when it was sent (or, with `background`,
    is on its way)."""
    mail = OutgoingMail.objects.create(
        subject=subject[:300],
        recipients=list(recipients),
        text=text,
        html=html,
        claim=uuid.uuid4(),
        due_at=timezone.now() + _lease(),
    )
    if not background:
        return _send(_take(mail.pk, claim=mail.claim))
    transaction.on_commit(lambda: _enqueue(mail.pk, mail.claim))
    return True


def send_due(limit: int = 200) -> int:
    """Send the stored mails whose time has come; returns how many went. Stops at the first
    failure: the mail server is likely down, and the next round tries again."""
    sent = 0
    due = OutgoingMail.objects.filter(due_at__lte=timezone.now()).values_list("pk", flat=True)[:limit]
    for pk in list(due):
        mail = _take(pk)
        if mail is None:
            continue  # another sender has it
        if not _send(mail):
            break
        sent += 1
    return sent


def _lease() -> timedelta:
    return timedelta(seconds=settings.M2D_MAIL_LEASE_SECONDS)


def _take(pk: int, claim: uuid.UUID | None = None) -> OutgoingMail | None:
    """Claim the mail for one attempt: its writer by the claim it was stored with, anyone else
    once the last claim ran out. None when another sender holds it, or it is gone."""
    now = timezone.now()
    rows = OutgoingMail.objects.filter(pk=pk)
    rows = rows.filter(claim=claim) if claim is not None else rows.filter(due_at__lte=now)
    if not rows.update(claim=uuid.uuid4(), due_at=now + _lease(), attempts=F("attempts") + 1):
        return None
    return OutgoingMail.objects.filter(pk=pk).first()


def _send(mail: OutgoingMail | None) -> bool:
    if mail is None:
        return False
    message = EmailMultiAlternatives(mail.subject, mail.text, None, mail.recipients)
    if mail.html:
        message.attach_alternative(mail.html, "text/html")
    try:
        message.send()
    except Exception as exc:
        log.exception("could not send %r to %s (attempt %s)", mail.subject, mail.recipients, mail.attempts)
        _later(mail, exc)
        return False
    OutgoingMail.objects.filter(pk=mail.pk).delete()
    return True


def _later(mail: OutgoingMail, exc: Exception) -> None:
    now = timezone.now()
    if now - mail.created_at > timedelta(hours=settings.M2D_MAIL_RETRY_HOURS):
        log.error("giving up on %r to %s after %s attempts", mail.subject, mail.recipients, mail.attempts)
        OutgoingMail.objects.filter(pk=mail.pk).delete()
        return
    pause = min(60 * 2 ** (mail.attempts - 1), MAX_PAUSE_SECONDS)
    OutgoingMail.objects.filter(pk=mail.pk).update(
        due_at=now + timedelta(seconds=pause), last_error=f"{type(exc).__name__}: {exc}"[:2000]
    )


# --- this process's outbox thread ----------------------------------------------------------------

_queue: queue.Queue | None = None
_queue_pid = 0
_queue_lock = threading.Lock()


def _enqueue(pk: int, claim: uuid.UUID) -> None:
    try:
        _outbox().put_nowait((pk, claim))
    except queue.Full:
        log.warning("the outbox is full; mail %s waits for the scheduled resend", pk)


def _outbox() -> queue.Queue:
    global _queue, _queue_pid
    with _queue_lock:
        if _queue is None or _queue_pid != os.getpid():  # a forked child has no thread of its own
            _queue, _queue_pid = queue.Queue(maxsize=QUEUE_SIZE), os.getpid()
            threading.Thread(target=_send_forever, args=(_queue,), name="m2d-outbox", daemon=True).start()
            atexit.register(_drain, _queue)
    return _queue


def _send_forever(outbox: queue.Queue) -> None:
    while True:
        pk, claim = outbox.get()
        try:
            _send(_take(pk, claim=claim))
        except Exception:  # the database away: the stored mail waits for the scheduled resend
            log.exception("the outbox could not send mail %s", pk)
        finally:
            connections.close_all()  # this thread's own
            outbox.task_done()


def drain(timeout: float = DRAIN_SECONDS) -> int:
    """Give this process's outbox thread up to `timeout` seconds to send what it holds; returns
    how many mails it still holds (they wait for the scheduled resend)."""
    return _drain(_queue, timeout) if _queue is not None and _queue_pid == os.getpid() else 0


def _drain(outbox: queue.Queue, timeout: float = DRAIN_SECONDS) -> int:
    deadline = time.monotonic() + timeout
    while outbox.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.05)
    if outbox.unfinished_tasks:
        log.warning("%s e-mails wait for the scheduled resend: the process ended first", outbox.unfinished_tasks)
    return outbox.unfinished_tasks
