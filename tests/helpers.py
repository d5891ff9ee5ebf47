"""Helpers shared by the integration, security and reliability suites."""

import time

import pytest
import requests
from django.conf import settings
from django.urls import reverse

from submissions.models import Submission
from tests.conftest import make_zip


def mail_text(message) -> str:
    """The plain-text part of a mail as the SMTP server received it."""
    return _mail_part(message, "text/plain")


def mail_html(message) -> str:
    """The HTML part of a mail as the SMTP server received it."""
    return _mail_part(message, "text/html")


def _mail_part(message, content_type: str) -> str:
    for part in message.walk():
        if part.get_content_type() == content_type and not part.is_multipart():
            return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    raise AssertionError(f"the mail {message['Subject']!r} has no {content_type} part")


def wait_finished(submission_id: int, timeout: float = 300) -> Submission:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        submission = Submission.objects.get(pk=submission_id)
        if submission.is_finished:
            return submission
        time.sleep(0.3)
    pytest.fail(f"submission {submission_id} did not finish in {timeout} s (status {submission.status})")


def upload(client, user, files) -> int:
    """Upload a zip of `files` through the portal's page as `user`; returns the submission id."""
    client.force_login(user)
    response = client.post(reverse("submissions:upload"), {"archive": make_zip(files)})
    assert response.status_code == 302, response.content.decode()[:2000]
    return int(response.url.rstrip("/").split("/")[-1])


def mlflow_runs(researcher, experiment_id: str | None = None) -> list[dict]:
    response = requests.post(
        f"{settings.MLFLOW_URL}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [experiment_id or researcher.mlflow_experiment_id], "max_results": 100},
        auth=(researcher.mlflow_username, researcher.mlflow_password),
        timeout=10,
    )
    response.raise_for_status()
    return response.json().get("runs", [])


def sign_in_with_second_factor(client, user) -> None:
    """Sign `user` in as staff are after entering an authenticator code: the session holds
    allauth's record of the second factor (the code step itself is tested with the accounts).
    A user without an authenticator app gets one first."""
    from allauth.account.internal.flows.login import record_authentication
    from allauth.mfa.models import Authenticator
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
    from django.http import HttpRequest

    authenticator = Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).first()
    if authenticator is None:
        authenticator = TOTP.activate(user, generate_totp_secret()).instance
    client.force_login(user)
    request = HttpRequest()
    request.session = client.session
    record_authentication(request, user, "mfa", id=authenticator.pk, type=authenticator.type)
    request.session.save()
