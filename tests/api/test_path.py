"""The REST API on the real path: token upload → real workers, Docker and MLflow → logs, per-step
metrics, the export airlock and a download; cancelling a running job."""

import hashlib
import json
import time

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from exports.services import export_decide_all, export_request_release
from submissions.models import Submission
from tests.conftest import make_zip
from tests.helpers import wait_finished

pytestmark = [pytest.mark.docker, pytest.mark.services]

TRAIN = """
from pathlib import Path
import mlflow

with mlflow.start_run():
    for epoch in range(4):
        mlflow.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
        mlflow.log_metric("accuracy", 0.5 + epoch / 10, step=epoch)
        print(f"epoch {epoch} done", flush=True)
Path("/mnt/export/weights.txt").write_text("w=0.42\\n")
"""
SLEEP = "import time\nprint('started', flush=True)\ntime.sleep(600)\n"


def test_submit_follow_read_and_download(celery_workers, make_researcher, api_for, settings):
    researcher = make_researcher()
    api = api_for(researcher.user)
    archive = make_zip({"main.py": TRAIN, "requirements.txt": "mlflow==3.17.2\n"})
    created = api.post("/api/v1/submissions/", {"archive": archive}, format="multipart")
    assert created.status_code == 201, created.content
    submission_id = created.json()["id"]
    assert created["Location"] == f"/api/v1/submissions/{submission_id}/"
    assert created.json()["status"] == "received"

    wait_finished(submission_id)
    detail = api.get(f"/api/v1/submissions/{submission_id}/").json()
    assert detail["status"] == "succeeded", detail
    assert detail["finished"] is True and detail["exit_code"] == 0
    assert detail["metrics"] == {"loss": 0.25, "accuracy": pytest.approx(0.8)}
    # Held for review: how many and how big, never which (names are data the run chose).
    assert detail["exports"] == [] and detail["exports_unreleased"]["held"] == 1
    assert "weights.txt" not in json.dumps(detail)
    assert detail["timings"]["run_start"] and detail["timings"]["run_end"]

    logs = api.get(f"/api/v1/submissions/{submission_id}/logs/").json()
    assert "epoch 3 done" in logs["run"]["text"] and logs["run"]["hidden_bytes"] == 0

    metrics = api.get(f"/api/v1/submissions/{submission_id}/metrics/").json()
    assert metrics["history_available"] is True
    assert [(p["step"], p["value"]) for p in metrics["history"]["loss"]] == [(0, 1.0), (1, 0.5), (2, 1 / 3), (3, 0.25)]
    assert len(metrics["history"]["accuracy"]) == 4
    assert 0 < detail["run_seconds"] < detail["duration_seconds"]

    # The run has ended, so its history was kept when it did: MLflow going away changes nothing.
    mlflow_url, settings.MLFLOW_URL = settings.MLFLOW_URL, "http://127.0.0.1:9"
    again = api.get(f"/api/v1/submissions/{submission_id}/metrics/").json()
    assert again["history_available"] is True and again["history"] == metrics["history"]
    settings.MLFLOW_URL = mlflow_url

    # Held for review: counted, not named, no link yet.
    held = api.get(f"/api/v1/submissions/{submission_id}/exports/").json()
    assert held["status"] == "held" and held["release_zip_url"] is None and held["files"] == []
    assert held["unreleased"] == {"held": 1, "held_bytes": 7, "flagged": 0, "rejected": 0, "expired": 0}

    # Requested by its owner, released by an admin: a link appears that works with the token.
    submission = Submission.objects.get(pk=submission_id)
    export = export_request_release(by=researcher.user, submission=submission, justification="the trained weights")
    admin = get_user_model().objects.create_user("api-reviewer", "reviewer@example.org", "pw", is_staff=True)
    seen = {f.pk: f.sha256 for f in export.entries.all()}  # what the reviewer was shown
    export_decide_all(by=admin, export=export, decision="release", seen=seen, comment="weights only")
    released = api.get(f"/api/v1/submissions/{submission_id}/exports/").json()
    link = released["files"][0]["download_url"]
    assert released["files"][0]["state"] == "released" and link.startswith("http://testserver/api/v1/downloads/")
    download = api.get(link)
    body = b"".join(download.streaming_content)
    assert download.status_code == 200 and body == b"w=0.42\n"
    assert hashlib.sha256(body).hexdigest() == released["files"][0]["sha256"]
    # The link is its owner's alone; an admin sees the file released but gets no link of their own.
    stranger = api_for(make_researcher("eve").user)
    assert stranger.get(link).status_code == 404
    staff = APIClient()
    staff.force_authenticate(admin)
    as_admin = staff.get(f"/api/v1/submissions/{submission_id}/exports/").json()
    assert as_admin["files"][0]["state"] == "released" and as_admin["files"][0]["download_url"] is None
    assert staff.get(link).status_code == 404


def test_cancel_a_running_job(celery_workers, make_researcher, api_for):
    researcher = make_researcher()
    api = api_for(researcher.user)
    archive = make_zip({"main.py": SLEEP, "requirements.txt": ""})
    submission_id = api.post("/api/v1/submissions/", {"archive": archive}, format="multipart").json()["id"]
    deadline = time.monotonic() + 240
    while api.get(f"/api/v1/submissions/{submission_id}/").json()["status"] != "running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    cancelled = api.post(f"/api/v1/submissions/{submission_id}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert wait_finished(submission_id, timeout=60).status == "cancelled"
    # The container is stopped, not left to run out its time: the slot takes the next job at once.
    after = api.post("/api/v1/submissions/", {"archive": make_zip({"main.py": "print(1)", "requirements.txt": ""})})
    assert wait_finished(after.json()["id"], timeout=120).status == "succeeded"
    assert api.post(f"/api/v1/submissions/{submission_id}/cancel/").status_code == 409
