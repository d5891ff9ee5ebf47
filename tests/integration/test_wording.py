"""One way to say things across the portal: "Sign in" (never "Log in" or "Sign In"), "1 file"
(never "1 files"), and commands in messages shown as code, not between literal backticks."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from exports.models import ExportEvent
from tests.conftest import make_zip
from tests.integration.exports.conftest import finished_submission, users  # noqa: F401 (fixtures)

from .test_intake_refusals import researcher  # noqa: F401 (fixture)


def visible_text(page: str) -> str:
    return re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S))


@pytest.mark.django_db
def test_signing_in_and_out_is_called_the_same_everywhere(researcher):  # noqa: F811
    anonymous = Client()
    pages = [anonymous.get(url).content.decode() for url in ("/accounts/login/", "/accounts/signup/")]
    signed_in = Client()
    signed_in.force_login(researcher.user)
    pages += [signed_in.get(url).content.decode() for url in (reverse("submissions:list"), "/accounts/logout/")]
    text = " ".join(visible_text(page) for page in pages)
    assert "Sign in" in text and "Sign up" in text and "Sign out" in text
    for other in ("Log in", "Log out", "Login", "Logout", "Sign In", "Sign Up", "Sign Out", "Remember Me"):
        assert other not in text, other


@pytest.mark.django_db
def test_a_refusal_shows_commands_as_code(researcher, client):  # noqa: F811
    client.force_login(researcher.user)
    response = client.post(reverse("submissions:upload"), {"archive": make_zip({"train.py": "print(1)\n"})})
    page = response.content.decode()
    assert "main.py is missing at the top of the zip" in page
    assert "<code>zip submission.zip main.py requirements.txt</code>" in page
    assert "`" not in visible_text(page)


def test_one_exported_file_is_one_file(users, finished_submission, settings, tmp_path):  # noqa: F811
    settings.M2D_EXPORT_ROOT = tmp_path  # nothing left from other runs in the submission's folder
    submission = finished_submission(users["owner"], {"report.txt": b"r\n"})
    collected = ExportEvent.objects.get(submission=submission, action=ExportEvent.Action.COLLECTED)
    assert collected.comment == "1 file"
    assert str(submission.export) == f"export of submission {submission.pk} (1 file)"


@pytest.mark.django_db
def test_one_waiting_submission_is_one_submission(researcher, settings):  # noqa: F811
    from submissions.models import Submission
    from submissions.services import SubmissionRefused, submission_create

    settings.M2D_MAX_QUEUED_PER_RESEARCHER = 1
    Submission.objects.create(owner=researcher.user, archive="x.zip", archive_sha256="0" * 64)
    with pytest.raises(SubmissionRefused, match="You have 1 submission waiting, the most"):
        submission_create(by=researcher.user, upload=make_zip({"main.py": "print(1)\n"}))
