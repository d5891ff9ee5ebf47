"""What a run slot is handed (runner.jobs.run_job_for): everything the run needs, read once from
the database and the settings, frozen, so that the run itself reads no model."""

import dataclasses
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model

from accounts import crypto
from accounts.models import Researcher
from accounts.selectors import MlflowCredentials
from runner.docker_api import LABEL_SLOT, LABEL_SUBMISSION
from runner.jobs import run_job_for
from runner.pipeline import run_spec
from submissions.facts import TrackingTotals
from submissions.models import Submission


@pytest.fixture
def job_settings(settings, tmp_path):
    settings.M2D_ENCRYPTION_KEY = Fernet.generate_key().decode()
    settings.VAR_DIR = tmp_path
    settings.M2D_DATASET_DIR = Path("/srv/clam")
    settings.M2D_EXPORT_ROOT = Path("/srv/exports")
    settings.M2D_EXPORT_VOLUME_DIR = Path("/srv/export-volumes")
    settings.M2D_GATEWAY_DIR = Path("/srv/gateway")
    settings.M2D_EXPORT_MAX_BYTES = 7 * 1024**2
    settings.M2D_EXPORT_MAX_FILES = 12
    settings.M2D_RUN_UID, settings.M2D_FORWARDER_UID = 2001, 2002
    settings.M2D_RUN_MEMORY, settings.M2D_RUN_TIMEOUT, settings.M2D_RUN_SILENCE_TIMEOUT = "3g", 5400, 900
    settings.M2D_LOG_TAIL_LINES = 25
    settings.M2D_TRACKING_MAX_BYTES_IN = 4321
    return settings


def _running(name: str, gpu_id: str, **fields) -> Submission:
    user = get_user_model().objects.create_user(name, f"{name}@example.org")
    researcher = Researcher.objects.create(
        user=user,
        status=Researcher.Status.APPROVED,
        mlflow_username=f"mlflow-{name}",
        mlflow_password_encrypted=crypto.encrypt(f"{name}-password"),
    )
    submission = Submission.objects.create(
        owner=user,
        status=Submission.Status.RUNNING,
        archive="submissions/x.zip",
        archive_sha256="0" * 64,
        image_id="sha256:built",
        slot=f"host-a/gpu{gpu_id}" if gpu_id else "host-a/cpu0",
        gpu_id=gpu_id,
        **fields,
    )
    submission.researcher = researcher
    return submission


@pytest.mark.parametrize(("gpu_id", "expected_gpu"), [("3", "3"), ("", None)])
def test_the_job_carries_what_the_database_and_the_settings_say(db, job_settings, gpu_id, expected_gpu):
    submission = _running("alice", gpu_id, tracking_calls=4, tracking_bytes=500, tracking_bytes_received=70)
    job = run_job_for(submission.pk)
    assert (job.submission_id, job.owner_id, job.owner_username) == (submission.pk, submission.owner_id, "alice")
    assert (job.image, job.slot, job.gpu_id) == ("sha256:built", submission.slot, expected_gpu)
    assert job.credentials == MlflowCredentials(
        researcher_id=submission.researcher.pk,
        username="mlflow-alice",
        password="alice-password",
        experiment_name="mlflow-alice",
    )
    # A requeued or adopted run goes on from what its earlier attempts used.
    assert job.tracking_used == TrackingTotals(calls=4, bytes_sent=500, bytes_received=70)
    assert job.dataset_dir == Path("/srv/clam")
    assert job.export_folder == Path(f"/srv/exports/{submission.pk}")
    assert job.export_volume.mountpoint == Path(f"/srv/export-volumes/{submission.pk}")
    assert (job.export_volume.size_bytes, job.export_volume.uid) == (7 * 1024**2, 2001)
    assert job.gateway_dir == Path(f"/srv/gateway/{submission.pk}")
    assert job.log_path == job_settings.VAR_DIR / "logs" / str(submission.pk) / "run.log"
    assert (job.run_uid, job.forwarder_uid) == (2001, 2002)
    limits = job.limits
    assert (limits.memory, limits.timeout, limits.silence_timeout, limits.log_tail_lines) == ("3g", 5400, 900, 25)
    assert (limits.export.max_bytes, limits.export.max_files) == (7 * 1024**2, 12)
    assert limits.tracking_max_bytes_in == 4321


def test_the_job_is_frozen_and_later_changes_to_the_row_do_not_reach_it(db, job_settings):
    submission = _running("bob", "")
    job = run_job_for(submission.pk)
    Submission.objects.filter(pk=submission.pk).update(slot="host-b/cpu1", image_id="sha256:other")
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.image = "sha256:other"
    spec = run_spec(job, job.image, Path("/mnt/x"))
    assert (spec.image, spec.slot) == ("sha256:built", "host-a/cpu0")
    assert spec.labels[LABEL_SUBMISSION] == str(submission.pk) and spec.labels[LABEL_SLOT] == "host-a/cpu0"
    assert spec.labels["org.m2d.owner"] == "bob"
