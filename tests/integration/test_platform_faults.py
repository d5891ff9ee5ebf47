"""A platform fault is the platform's: a build while the Docker engine is unreachable ends at
stage infrastructure, and the researcher is told it was not their code."""

import uuid

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


def test_engine_down_fails_at_infrastructure(transactional_db, engine_down, mailbox, settings):
    from accounts.models import Researcher
    from accounts.services import researcher_create
    from submissions.services import submission_create

    researcher = researcher_create(username="ivo", email="ivo@example.org", password="pw-ivo-ivo-ivo-ivo")
    Researcher.objects.filter(pk=researcher.pk).update(
        status=Researcher.Status.APPROVED, mlflow_username="ivo", mlflow_provisioned_at="2026-01-01T00:00Z"
    )
    researcher.user.refresh_from_db()
    settings.M2D_QUEUE_BUILD = f"nobody-builds-{uuid.uuid4().hex}"  # the build is run here, below
    submission = submission_create(by=researcher.user, upload=make_zip({"main.py": "", "requirements.txt": ""}))

    builds.build(submission.pk)

    submission.refresh_from_db()
    assert (submission.status, submission.failure_stage) == ("failed", "infrastructure")
    assert "Docker engine" in submission.reason
    received, failed = mailbox.wait_for("ivo@example.org", 2)
    assert received["Subject"] == f"[M2D] Submission {submission.pk}: code received"
    assert failed["Subject"] == f"[M2D] Submission {submission.pk}: execution failed"
    assert "fault of the platform, not of your code" in mail_text(failed)
