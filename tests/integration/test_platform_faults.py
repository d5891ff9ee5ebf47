"""A platform fault is the platform's: a build while the Docker engine is unreachable ends at
stage infrastructure, and the researcher is told it was not their code."""

import pytest

from runner import builds, docker_api
from tests.conftest import make_zip
from tests.helpers import mail_text


@pytest.fixture
def engine_down(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine-here.sock")
    docker_api.client.cache_clear()
    yield
    docker_api.client.cache_clear()


def test_engine_down_fails_at_infrastructure(db, engine_down, mailbox, django_capture_on_commit_callbacks):
    from accounts.models import Researcher
    from accounts.services import researcher_create
    from submissions.services import submission_create

    researcher = researcher_create(username="ivo", email="ivo@example.org", password="pw-ivo-ivo-ivo-ivo")
    Researcher.objects.filter(pk=researcher.pk).update(
        status=Researcher.Status.APPROVED, mlflow_username="ivo", mlflow_provisioned_at="2026-01-01T00:00Z"
    )
    researcher.user.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=False):
        submission = submission_create(by=researcher.user, upload=make_zip({"main.py": "", "requirements.txt": ""}))

    with django_capture_on_commit_callbacks(execute=True):
        builds.build(submission.pk)

    submission.refresh_from_db()
    assert (submission.status, submission.failure_stage) == ("failed", "infrastructure")
    assert "Docker engine" in submission.reason
    mail = mailbox.wait_for("ivo@example.org", 1)[-1]
    assert "fault of the platform, not of your code" in mail_text(mail)
