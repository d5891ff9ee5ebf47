"""The sha256 a researcher sees for their upload is of the files inside it, it says so, and the
page, the mail, the API's summary, `m2d` and the pre-flight check all show the same value."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from django.urls import reverse

from exports.reports import submission_summary
from m2d_cli.cli import _print_outcome
from submissions import intake
from submissions.models import Submission
from submissions.notifications import status_changed
from tests.helpers import mail_text
from tests.integration.exports.conftest import users  # noqa: F401 (fixture)

FILES = {"main.py": b"print('hello')\n", "requirements.txt": b"numpy==2.1.0\n"}


def zipped(path: Path, order, date_time) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name in order:
            archive.writestr(zipfile.ZipInfo(name, date_time=date_time), FILES[name])
    return path


def test_the_hash_is_of_the_contents_and_everything_says_so(users, client, mailbox, capsys, tmp_path):  # noqa: F811
    # Two zips of the same files, made on different days in a different order: different bytes.
    first = zipped(tmp_path / "a.zip", ["main.py", "requirements.txt"], (2026, 1, 2, 3, 4, 6))
    second = zipped(tmp_path / "b.zip", ["requirements.txt", "main.py"], (2025, 7, 8, 9, 10, 12))
    assert hashlib.sha256(first.read_bytes()).digest() != hashlib.sha256(second.read_bytes()).digest()
    digest = intake.contents_sha256(first, intake.inspect_zip(first, intake.IntakeLimits()))
    assert digest == intake.contents_sha256(second, intake.inspect_zip(second, intake.IntakeLimits()))

    # The pre-flight check prints it ...
    assert intake.main([str(second)]) == 0
    assert f"sha256 of its contents: {digest} (the portal shows the same)" in capsys.readouterr().out

    # ... and so does every place that shows the submission, each calling it the contents' hash.
    submission = Submission.objects.create(
        owner=users["owner"], archive="submissions/x.zip", archive_sha256=digest, original_name="submission.zip"
    )
    client.force_login(users["owner"])
    page = client.get(reverse("submissions:detail", args=[submission.pk])).content.decode()
    assert f"sha256 {digest[:16]}…" in page
    assert "of the files in the zip, not of the zip itself" in page
    assert "python3 submissions/intake.py submission.zip</code> prints it" in page

    status_changed(submission.pk, Submission.Status.RECEIVED)
    mail = mail_text(mailbox.wait_for(users["owner"].email, 1)[-1])
    assert f"sha256 of its contents {digest[:12]}…" in mail

    summary = submission_summary(submission)
    assert summary["contents_sha256"] == digest
    _print_outcome({**summary, "page_url": "https://m2d.example/submissions/1/"})
    assert f"Contents: sha256 {digest} (of the files in the zip, not of the zip itself)" in capsys.readouterr().out
