"""Every e-mail the platform sends goes out as plain text with an HTML alternative.

The text template (`NAME.txt`) is the message; `NAME.html`, where it exists, is its designed HTML
twin. Without one, the HTML part is the text laid out in the common e-mail frame, links made
clickable, so every mail reads well in both kinds of client.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time

from django.core.mail import EmailMultiAlternatives
from django.template import TemplateDoesNotExist
from django.template.loader import get_template, render_to_string

log = logging.getLogger(__name__)

FRAME = "email/frame.html"


def render(template: str, context: dict) -> tuple[str, str]:
    """The text and the HTML body of the mail NAME (without extension)."""
    text = render_to_string(f"{template}.txt", context)
    try:
        html_template = get_template(f"{template}.html")
    except TemplateDoesNotExist:
        return text, html_from_text(text, context)
    return text, html_template.render(context)


def html_from_text(text: str, context: dict | None = None) -> str:
    """A text mail laid out in the e-mail frame, its links clickable."""
    # The frame carries the signature: the text's own ("-- " and after) is left out.
    body = text.split("\n-- \n")[0].strip()
    return render_to_string(FRAME, {**(context or {}), "plain_text": body})


def send(subject: str, template: str, context: dict, recipients: list[str], *, background: bool = False) -> bool:
    """Send one mail to the recipients; False (and the fault logged) when it could not be sent.

    A mail outage must never undo or block what has been decided: callers go on either way. With
    `background`, the mail is made now and handed to this process's outbox, which delivers mails
    one after another in the order given: a slow or unreachable mail server then never holds up
    the caller (a run slot taking its next job). True then means "on its way".
    """
    if not recipients:
        return False
    text, html = render(template, {**context, "subject": subject})
    message = EmailMultiAlternatives(subject, text, None, recipients)
    message.attach_alternative(html, "text/html")
    if background:
        try:
            _outbox().put_nowait(message)
            return True
        except queue.Full:
            log.warning("the outbox is full; sending %r at once", subject)
    return _deliver(message)


def _deliver(message: EmailMultiAlternatives) -> bool:
    try:
        message.send()
    except Exception:
        log.exception("could not send %r to %s", message.subject, message.to)
        return False
    return True


OUTBOX_SIZE = 1000
# At exit, how long the outbox may still take to deliver what it holds.
OUTBOX_DRAIN_SECONDS = 15.0
_outbox_queue: queue.Queue | None = None
_outbox_pid = 0
_outbox_lock = threading.Lock()


def _outbox() -> queue.Queue:
    global _outbox_queue, _outbox_pid
    with _outbox_lock:
        if _outbox_queue is None or _outbox_pid != os.getpid():  # a forked child has no thread of its own
            _outbox_queue, _outbox_pid = queue.Queue(maxsize=OUTBOX_SIZE), os.getpid()
            threading.Thread(target=_deliver_forever, args=(_outbox_queue,), name="m2d-outbox", daemon=True).start()
            atexit.register(_drain, _outbox_queue)
    return _outbox_queue


def _deliver_forever(outbox: queue.Queue) -> None:
    from django.db import connections

    while True:
        message = outbox.get()
        try:
            _deliver(message)
        finally:
            connections.close_all()  # this thread's own (a failed send is recorded in the database)
            outbox.task_done()


def _drain(outbox: queue.Queue) -> None:
    """Give the outbox a little time to deliver what it holds before the process ends."""
    deadline = time.monotonic() + OUTBOX_DRAIN_SECONDS
    while outbox.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.05)
    if outbox.unfinished_tasks:
        log.warning("%s e-mails were not delivered before the process ended", outbox.unfinished_tasks)
