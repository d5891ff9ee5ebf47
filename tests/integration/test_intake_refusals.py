"""Bad uploads are refused on the page with a message that says what to fix, and nothing is
stored or queued."""

import html
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from submissions.intake import IntakeError, inspect_zip
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


# -- requirements.txt: the same refusal from every door --------------------------------------

BAD_REQUIREMENTS = {
    "extra index": ("numpy==2.1.0\n--extra-index-url http://example.org/simple\n", 2),
    "git link": ("numpy==2.1.0\n\ngit+https://example.org/lab/tools.git@v1#egg=tools\n", 3),
    "direct URL": ("tools @ https://example.org/tools-1.0-py3-none-any.whl\n", 1),
    "editable": ("# my package\n-e .\n", 2),
}
GOOD_REQUIREMENTS = (
    "# pinned for the paper\n"
    "numpy==2.1.0 \\\n"
    "    --hash=sha256:0a1b2c3d4e5f \\\n"
    "    --hash=sha256:6a7b8c9d0e1f\n"
    "pandas[excel]==2.2.3  # reads the spreadsheets\n"
    'tomli==2.0.1; python_version < "3.11"\n'
)
SURFACES = ["page", "api", "cli", "preflight", "check_submission"]
QUEUES = {f"M2D_QUEUE_{role}": f"intake-doors-{role.lower()}" for role in ("BUILD", "RUN", "OPS")}


@pytest.fixture
def live_researcher(transactional_db):
    from accounts.models import Researcher
    from accounts.services import researcher_create

    researcher = researcher_create(username="ines", email="ines@example.org", password="pw-ines-ines-ines")
    Researcher.objects.filter(pk=researcher.pk).update(
        status=Researcher.Status.APPROVED, mlflow_username="ines", mlflow_provisioned_at="2026-01-01T00:00Z"
    )
    researcher.refresh_from_db()
    return researcher.user


@pytest.fixture(scope="module")
def live_portal(django_db_setup):
    """The portal in a web process of its own, for the `m2d` command. Builds it accepts wait on
    queues no worker listens to: nothing here is built."""
    from tests.conftest import _worker_database_url, free_port
    from tests.reliability.test_restarts import start_web

    port = free_port()
    web = start_web(port, {**os.environ, "DATABASE_URL": _worker_database_url(), **QUEUES})
    yield f"http://127.0.0.1:{port}"
    web.terminate()
    web.wait(timeout=30)


def submit_through(surface, user, archive: Path, request) -> tuple[bool, str]:
    """(accepted, what the researcher reads) through one way in."""
    from accounts.services import api_token_create

    if surface == "page":
        client = Client()
        client.force_login(user)
        with archive.open("rb") as upload:
            response = client.post(reverse("submissions:upload"), {"archive": upload})
        return response.status_code == 302, html.unescape(response.content.decode())
    if surface == "api":
        client = Client(HTTP_AUTHORIZATION=f"Token {api_token_create(by=user).key}")
        with archive.open("rb") as upload:
            response = client.post("/api/v1/submissions/", {"archive": upload})
        assert response.status_code in (201, 400), response.content
        body = response.json()
        return response.status_code == 201, "" if response.status_code == 201 else "\n".join(body["archive"])
    if surface == "cli":
        from tests.cli.test_cli import m2d_command

        env = {**os.environ, "M2D_URL": request.getfixturevalue("live_portal")}
        env["M2D_TOKEN"] = api_token_create(by=user).key
        done = subprocess.run(m2d_command() + ["submit", str(archive)], env=env, capture_output=True, text=True)
        assert done.returncode in (0, 2), done.stdout + done.stderr
        return done.returncode == 0, done.stdout + done.stderr
    if surface == "preflight":
        script = Path(settings.BASE_DIR) / "submissions" / "intake.py"
        # -I: what a researcher's own Python 3 runs, without the platform's packages
        command = [sys.executable, "-I", str(script), str(archive)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode in (0, 1), done.stderr
        return done.returncode == 0, done.stdout
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("check_submission", str(archive), stdout=out, stderr=err)
    except SystemExit as stopped:
        assert stopped.code == 1
        return False, err.getvalue()
    return True, out.getvalue()


@pytest.mark.services
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("case", [*BAD_REQUIREMENTS, "good"])
def test_requirement_lines_get_one_answer_from_every_door(surface, case, live_researcher, settings, tmp_path, request):
    for name, value in QUEUES.items():
        setattr(settings, name, value)
    text, number = BAD_REQUIREMENTS.get(case, (GOOD_REQUIREMENTS, 0))
    archive = tmp_path / "submission.zip"
    archive.write_bytes(make_zip({"main.py": "print('training')\n", "requirements.txt": text}).getvalue())

    accepted, shown = submit_through(surface, live_researcher, archive, request)

    if case == "good":
        assert accepted, shown
        assert Submission.objects.filter(owner=live_researcher).count() == (surface in ("page", "api", "cli"))
        return
    line = text.splitlines()[number - 1]
    with pytest.raises(IntakeError) as refusal:
        inspect_zip(archive)
    message = str(refusal.value)
    assert message.startswith(f'requirements.txt line {number}: "{line}" — ')
    assert "the platform installs them from its own package index" in message
    assert not accepted and message in shown, shown
    assert not Submission.objects.exists()


def test_an_admin_may_allow_requirement_urls_but_never_another_index(
    client, researcher, settings, django_capture_on_commit_callbacks
):
    settings.M2D_ALLOW_REQUIREMENT_URLS = True
    client.force_login(researcher.user)
    index = make_zip({"main.py": "", "requirements.txt": "--index-url http://example.org/simple\n"})
    response = client.post(reverse("submissions:upload"), {"archive": index})
    assert response.status_code == 400 and "pip options are not allowed" in html.unescape(response.content.decode())
    vcs = make_zip({"main.py": "", "requirements.txt": "tools @ git+https://example.org/lab/tools.git@v1\n"})
    with django_capture_on_commit_callbacks():  # captured, not run: nothing is built
        response = client.post(reverse("submissions:upload"), {"archive": vcs})
    assert response.status_code == 302
    assert Submission.objects.get().requirements.startswith("tools @ git+https://")
