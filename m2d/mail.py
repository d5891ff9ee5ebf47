"""Every e-mail the platform sends goes out as plain text with an HTML alternative.

The text template (`NAME.txt`) is the message; `NAME.html`, where it exists, is its designed HTML
twin. Without one, the HTML part is the text laid out in the common e-mail frame, links made
clickable, so every mail reads well in both kinds of client.
"""

from __future__ import annotations

from django.template import TemplateDoesNotExist
from django.template.loader import get_template, render_to_string

from ops import outbox

FRAME = "email/frame.html"


def send_each(subject: str, template: str, context: dict, users) -> None:
    """Send the mail to each of `users` on its own, so each is greeted by name (`recipient`)."""
    for user in users:
        if user.email:
            send(subject, template, {**context, "recipient": user}, [user.email])


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
    """Send one mail to the recipients; False (and the fault logged) when it could not be sent now.

    A mail outage must never undo or block what has been decided: callers go on either way, and
    the mail, stored in the outbox (ops.outbox), is sent again until it goes. With `background`,
    this process's outbox thread sends it once the caller's transaction commits, one mail after
    another in the order given: a slow or unreachable mail server then never holds up the caller
    (a run slot taking its next job). True then means "on its way".
    """
    if not recipients:
        return False
    text, html = render(template, {**context, "subject": subject})
    return outbox.post(subject, text, html, recipients, background=background)
