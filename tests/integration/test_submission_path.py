"""The whole path on real components: upload page → real Celery workers → real Docker build and
sandboxed run → the tracking gateway → the real MLflow server with its auth app → e-mails through
a real SMTP server."""

import hashlib
import time

import pytest
import requests
from django.conf import settings
from django.urls import reverse

from accounts.models import MailStep
from tests.helpers import mail_html, mail_text, mlflow_runs, upload, wait_finished

pytestmark = [pytest.mark.docker, pytest.mark.services]

PASTED_MAIN = """
import os
from pathlib import Path

import mlflow

# Credentials pasted into the file, as researchers are used to (the platform sets them too).
os.environ["MLFLOW_TRACKING_USERNAME"] = "{username}"
os.environ["MLFLOW_TRACKING_PASSWORD"] = "{password}"
mlflow.set_tracking_uri("http://mlflow-server:3001")
mlflow.set_experiment("{username}")

rows = Path("/mnt/dataset/clam-details-image.csv").read_text().splitlines()
with mlflow.start_run():
    mlflow.log_param("rows_seen", len(rows) - 1)
    mlflow.log_metric("dataset_rows", len(rows) - 1)
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
Path("/mnt/export/report.txt").write_text("first line of the data set: " + rows[0] + "\\n")
print("done")
"""


def test_upload_to_metrics_exports_and_mail(client, celery_workers, mailbox, make_researcher):
    researcher = make_researcher()
    researcher.email_steps = list(MailStep.values)  # ticked on the account page: a mail at every step
    researcher.save(update_fields=["email_steps"])
    main = PASTED_MAIN.format(username=researcher.mlflow_username, password=researcher.mlflow_password)
    submission_id = upload(client, researcher.user, {"main.py": main, "requirements.txt": "mlflow==3.17.2\n"})

    submission = wait_finished(submission_id)
    assert submission.status == "succeeded", submission.reason + submission.run_log_tail
    assert submission.exit_code == 0
    # The log holds what main.py printed, not MLflow's links to an address only the sandbox has.
    assert submission.run_log_tail.splitlines()[-1] == "done"
    assert "mlflow-server:3001" not in submission.run_log_tail

    # Metrics and params in MLflow, in the researcher's own experiment, tagged with the submission.
    expected_rows = len((settings.M2D_DATASET_DIR / "clam-details-image.csv").read_text().splitlines()) - 1
    runs = mlflow_runs(researcher)
    assert len(runs) == 1
    data = runs[0]["data"]
    assert {m["key"]: m["value"] for m in data["metrics"]}["dataset_rows"] == expected_rows
    assert {p["key"]: p["value"] for p in data["params"]}["rows_seen"] == str(expected_rows)
    assert {t["key"]: t["value"] for t in data["tags"]}["m2d.submission_id"] == str(submission_id)
    assert submission.metrics == {"dataset_rows": expected_rows, "loss": pytest.approx(1 / 3)}
    assert submission.tracking_calls > 0 and submission.tracking_bytes > 0

    # The export is on the host, in the manifest with its sha256.
    exported = settings.M2D_EXPORT_ROOT / str(submission_id) / "report.txt"
    content = exported.read_bytes()
    assert content.startswith(b"first line of the data set: Patient_Id;CaseName")
    assert submission.export.files == [
        {"path": "report.txt", "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    ]

    # The e-mails went out in order, each naming the submission.
    mails = [m for m in mailbox.wait_for(researcher.user.email, 5) if f"Submission {submission_id}:" in m["Subject"]]
    subjects = [m["Subject"] for m in mails]
    assert subjects == [
        f"[M2D] Submission {submission_id}: code received",
        f"[M2D] Submission {submission_id}: queued for execution",
        f"[M2D] Submission {submission_id}: execution started",
        f"[M2D] Submission {submission_id}: execution finished",
    ]
    assert "dataset_rows = " in mail_text(mails[-1])
    link = settings.PORTAL_URL + reverse("submissions:detail", args=[submission_id])
    for mail in mails:  # each in text and in HTML, each with the link to the submission
        assert link in mail_text(mail) and f'href="{link}"' in mail_html(mail)
    queued = mail_text(mails[1])
    assert "Position in the queue: 1" in queued or "It is starting now." in queued

    # The researcher sees the outcome on the page.
    page = client.get(reverse("submissions:detail", args=[submission_id])).content.decode()
    assert "succeeded" in page and "dataset_rows" in page
    # The file waits for review: its owner sees how many and how big, not its name.
    assert "1 file, " in page and "kept for review" in page and "report.txt" not in page

    # Nothing is left behind on the engine.
    from runner import docker_api

    assert docker_api.list_labelled(settings.M2D_INSTANCE, submission_id) == []


def test_failing_main_reports_its_traceback(client, celery_workers, mailbox, make_researcher):
    researcher = make_researcher()
    main = "import json\n\ndef train():\n    raise ValueError('learning rate must be positive')\n\ntrain()\n"
    submission_id = upload(client, researcher.user, {"main.py": main, "requirements.txt": "numpy\n"})

    submission = wait_finished(submission_id)
    assert (submission.status, submission.failure_stage, submission.exit_code) == ("failed", "run", 1)
    assert "main.py exited with code 1" in submission.reason
    assert "Traceback (most recent call last):" in submission.reason
    assert "ValueError: learning rate must be positive" in submission.reason
    mails = [m for m in mailbox.wait_for(researcher.user.email, 2) if f"Submission {submission_id}:" in m["Subject"]]
    # By default a researcher is mailed when the code is received and when it ends, not in between.
    assert [m["Subject"].split(": ", 1)[1] for m in mails] == ["code received", "execution failed"]
    failed = mail_text(mails[-1])
    assert "stage run" in failed and "main.py exited with code 1" in failed
    assert "ValueError: learning rate must be positive" in failed  # the end of its log
    assert settings.PORTAL_URL + reverse("submissions:detail", args=[submission_id]) in failed


def test_requirement_that_does_not_exist_fails_the_build(client, celery_workers, mailbox, make_researcher):
    researcher = make_researcher()
    submission_id = upload(
        client,
        researcher.user,
        {
            "main.py": "print('never runs')\n",
            "requirements.txt": "m2d-this-package-does-not-exist==0.0.1\n",
        },
    )

    submission = wait_finished(submission_id)
    assert (submission.status, submission.failure_stage) == ("failed", "build")
    assert "m2d-this-package-does-not-exist" in submission.reason
    assert "m2d-this-package-does-not-exist" in submission.build_log_tail  # the installer's own words
    # The failure's mail leaves through the build worker's outbox, and again later when the mail
    # server did not take it at once: wait as long as a retry takes on a busy machine.
    arrived = mailbox.wait_for(researcher.user.email, 2, timeout=90)
    mails = [m for m in arrived if f"Submission {submission_id}:" in m["Subject"]]
    assert [m["Subject"].split(": ", 1)[1] for m in mails] == ["code received", "execution failed"]
    assert "stage build" in mail_text(mails[-1])


WAITS_FOR_A_TAG = """
import time

import mlflow
from mlflow.tracking import MlflowClient

with mlflow.start_run() as run:
    mlflow.log_metric("before", 1)
    print("waiting for the go tag", flush=True)
    for _ in range(240):
        if MlflowClient().get_run(run.info.run_id).data.tags.get("go"):
            break
        time.sleep(0.5)
    else:
        raise SystemExit("no go tag")
    mlflow.log_metric("after", 1)
print("done")
"""


def test_a_password_rotated_mid_run_does_not_cut_the_run_off(client, celery_workers, make_researcher):
    """The run was started with the old MLflow password; its calls go on after the owner rotates it."""
    from accounts.services import mlflow_password_rotate

    researcher = make_researcher("rita")
    old_password = researcher.mlflow_password
    sid = upload(client, researcher.user, {"main.py": WAITS_FOR_A_TAG, "requirements.txt": "mlflow==3.17.2\n"})
    log = settings.VAR_DIR / "logs" / str(sid) / "run.log"
    deadline = time.monotonic() + 120
    while not (log.exists() and b"waiting for the go tag" in log.read_bytes()):
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.2)

    researcher = mlflow_password_rotate(by=researcher.user, researcher=researcher)
    researcher.refresh_from_db()
    assert researcher.mlflow_password != old_password
    [run] = mlflow_runs(researcher)  # MLflow takes the new password (and no longer the old one)
    requests.post(
        f"{settings.MLFLOW_URL}/api/2.0/mlflow/runs/set-tag",
        json={"run_id": run["info"]["run_id"], "key": "go", "value": "1"},
        auth=(researcher.mlflow_username, researcher.mlflow_password),
        timeout=10,
    ).raise_for_status()

    submission = wait_finished(sid, timeout=120)
    assert submission.status == "succeeded", submission.reason + submission.run_log_tail
    assert submission.metrics == {"before": 1.0, "after": 1.0}
