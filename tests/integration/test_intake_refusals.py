"""Bad uploads are refused on the page with a message that says what to fix, and nothing is
stored or queued."""

import io

import pytest
from django.conf import settings
from django.urls import reverse

from submissions.models import Submission, SubmissionEvent
from tests.conftest import make_zip


@pytest.fixture
def researcher(db):
    from accounts.models import Researcher
    from accounts.services import researcher_create

    researcher = researcher_create(username="rita", email="rita@example.org", password="pw-rita-rita-rita")
    # Approved and provisioned as far as the portal is concerned; these tests never reach MLflow.
    Researcher.objects.filter(pk=researcher.pk).update(
        status=Researcher.Status.APPROVED, mlflow_username="rita", mlflow_provisioned_at="2026-01-01T00:00Z"
    )
    researcher.refresh_from_db()
    return researcher


def stored_files():
    folder = settings.MEDIA_ROOT / "submissions"
    return sorted(folder.iterdir()) if folder.exists() else []


def not_a_zip():
    upload = io.BytesIO(b"%PDF-1.7 this is a paper, not code")
    upload.name = "submission.zip"
    return upload


CASES = {
    "not a zip": (not_a_zip, "not a zip"),
    "missing main.py": (lambda: make_zip({"requirements.txt": "numpy\n", "train.py": "print(1)\n"}), "main.py"),
    "missing requirements.txt": (lambda: make_zip({"main.py": "print(1)\n"}), "requirements.txt"),
    "one folder too deep": (
        lambda: make_zip({"a/src/main.py": "print(1)\n", "a/src/requirements.txt": "numpy\n"}),
        "a/src/main.py",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_refused_with_a_message_and_nothing_stored(client, researcher, case, django_capture_on_commit_callbacks):
    make_upload, expected_text = CASES[case]
    before = stored_files()
    client.force_login(researcher.user)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("submissions:upload"), {"archive": make_upload()})
    assert response.status_code == 400
    page = response.content.decode()
    assert expected_text in page
    assert not Submission.objects.exists()
    assert not SubmissionEvent.objects.exists()
    assert stored_files() == before
    assert callbacks == []  # no build task, no e-mail


def test_a_github_style_zip_is_accepted_with_its_folder_stripped(
    client, researcher, django_capture_on_commit_callbacks
):
    client.force_login(researcher.user)
    archive = make_zip({"project-main/main.py": "print(1)\n", "project-main/requirements.txt": "numpy==2.4.6\n"})
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("submissions:upload"), {"archive": archive})
    assert response.status_code == 302
    submission = Submission.objects.get()
    assert submission.status == "received"
    import zipfile

    with zipfile.ZipFile(submission.archive.path) as stored:
        assert sorted(stored.namelist()) == ["main.py", "requirements.txt"]
    assert len(callbacks) == 2  # the "code received" e-mail and the build task


def test_a_researcher_not_yet_approved_cannot_upload(client, db):
    from accounts.services import researcher_create

    pending = researcher_create(username="pat", email="pat@example.org", password="pw-pat-pat-pat-pat")
    client.force_login(pending.user)
    response = client.post(
        reverse("submissions:upload"), {"archive": make_zip({"main.py": "", "requirements.txt": ""})}
    )
    assert "not approved" in response.content.decode()
    assert not Submission.objects.exists()
