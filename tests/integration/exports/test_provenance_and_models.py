"""A real run end to end (portal → real workers → Docker → MLflow), then its provenance record and
the released model registered from it."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.urls import reverse

from exports.dataset_index import dataset_index
from modelstore.models import ModelVersion
from tests.helpers import sign_in_with_second_factor, upload, wait_finished

from .conftest import seen_on_page, sha256

pytestmark = [pytest.mark.docker, pytest.mark.services]

TRAIN = """
import io, zipfile
from pathlib import Path
import mlflow

rows = Path("/mnt/dataset/clam-details-image.csv").read_text().splitlines()
with mlflow.start_run():
    mlflow.log_metric("val_auc", 0.75)
    mlflow.log_metric("loss", 0.5, step=0)
    mlflow.log_metric("loss", 0.25, step=1)
# A checkpoint laid out like torch.save's zip format.
with zipfile.ZipFile("/mnt/export/model.pt", "w") as archive:
    archive.writestr("model/data.pkl", b"\\x80\\x02}q\\x00.")
    archive.writestr("model/data/0", bytes(range(256)) * 8)
Path("/mnt/export/rows.txt").write_text(str(len(rows)))
print("trained")
"""


def test_provenance_of_a_finished_run_and_its_model(client, celery_workers, mailbox, make_researcher, users):
    researcher = make_researcher("prov")
    owner, admin = researcher.user, users["admin1"]
    submission_id = upload(client, owner, {"main.py": TRAIN, "requirements.txt": "mlflow==3.17.2\n"})
    submission = wait_finished(submission_id)
    assert submission.status == "succeeded", submission.reason + submission.run_log_tail
    model_bytes = (settings.M2D_EXPORT_ROOT / str(submission_id) / "model.pt").read_bytes()

    # Release the checkpoint through the portal, then register it as a model.
    client.force_login(owner)
    client.post(reverse("exports:request", args=[submission_id]), {"justification": "Trained model for the paper."})
    checkpoint = submission.export.entries.get(path="model.pt")
    assert checkpoint.kind == "pytorch" and "pickle" in checkpoint.flags
    sign_in_with_second_factor(client, admin)
    client.post(
        reverse("exports:review", args=[submission.export.pk]),
        {
            **seen_on_page(client, submission.export),
            f"decision-{checkpoint.pk}": "release",
            "action": "decide",
            "comment": "weights only",
        },
    )
    client.force_login(owner)
    form = client.get(reverse("modelstore:register"), {"submission": submission_id}).content.decode()
    assert 'value="model.pt" checked' in form and "rows.txt" not in form  # released files only
    response = client.post(
        reverse("modelstore:register"),
        {"submission": submission_id, "name": "clam classifier!", "paths": ["model.pt"]},
        follow=True,
    )
    assert "Name the model &lt;dataset&gt;-&lt;task&gt;" in response.content.decode()
    client.post(
        reverse("modelstore:register"),
        {
            "submission": submission_id,
            "name": "clam-toy",
            "paths": ["model.pt"],
            "summary": "Toy classifier on CLaM-sample.",
        },
    )
    model = ModelVersion.objects.get(model__owner=owner)
    assert (model.model.name, model.number, model.submission_id) == ("clam-toy", 1, submission_id)
    assert model.metrics == {"val_auc": 0.75, "loss": 0.25} and model.metrics_source == "mlflow"
    (stored,) = model.files.all()
    assert (stored.path, stored.sha256, stored.kind) == ("model.pt", sha256(model_bytes), "pytorch")
    assert model.card["summary"] == "Toy classifier on CLaM-sample."
    assert "clam-toy" in client.get(reverse("modelstore:list")).content.decode()

    # The provenance record holds every fact of the run.
    response = client.get(reverse("exports:provenance", args=[submission_id]))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    record = json.loads(response.content)
    submission.refresh_from_db()
    code, images, execution = record["code"], record["images"], record["execution"]
    assert code["archive_sha256"] == submission.archive_sha256 and len(code["archive_sha256"]) == 64
    assert "mlflow==3.17.2" in code["requirements_resolved"]
    assert "numpy==" in code["runtime_packages"]
    assert images["image_id"] == submission.image_id and images["image"]["id"] == submission.image_id
    assert images["base"]["name"] == settings.M2D_BASE_IMAGE and images["base"]["id"].startswith("sha256:")
    assert images["runtime"]["id"].startswith("sha256:") and images["runtime"]["is_parent"] is True
    assert record["dataset"]["fingerprint"] == dataset_index().fingerprint
    assert execution["slot"] == submission.slot and execution["slot"]
    assert execution["gpus"] == []  # this host has no GPU
    assert execution["started_at"] < execution["ended_at"]
    assert (execution["status"], execution["exit_code"], execution["oom_killed"], execution["timed_out"]) == (
        "succeeded",
        0,
        False,
        False,
    )
    assert record["metrics"] == {"final": {"val_auc": 0.75, "loss": 0.25}, "source": "mlflow"}
    assert record["tracking"]["bytes"] == submission.tracking_bytes > 0 and record["tracking"]["calls"] > 0
    files = {f["path"]: f for f in record["export"]["files"]}
    assert files["model.pt"]["sha256"] == sha256(model_bytes) and files["model.pt"]["state"] == "released"
    # Held files are counted, never named: their names are data nobody has reviewed.
    assert "rows.txt" not in files and record["export"]["unreleased"]["held"] == 1
    assert "rows.txt" not in json.dumps(record)
    channels = record["exit_channels"]
    assert channels["tracking_out"] == {"bytes": submission.tracking_bytes, "cap": settings.M2D_TRACKING_MAX_BYTES}
    assert channels["run_log_tail"]["bytes"] == len(submission.run_log_tail.encode())
    assert channels["exports"]["files"] == 2 and channels["exports"]["released_files"] == 1
    review = [(r["action"], r["by"], r["file"]) for r in record["review"]]
    assert review == [("requested", owner.username, None), ("released", admin.username, "model.pt")]
    assert record["capture_problems"] == []
    # What the image holds was recorded from the image after its build, before the run began.
    assert submission.provenance.captured_at < submission.events.get(to_status="running").at

    # Owner and admins may read it; nobody else.
    client.force_login(admin)
    assert client.get(reverse("exports:provenance", args=[submission_id])).status_code == 200
    client.force_login(users["other"])
    assert client.get(reverse("exports:provenance", args=[submission_id])).status_code == 404

    from runner import docker_api

    assert docker_api.list_labelled(settings.M2D_INSTANCE, submission_id) == []  # the inspection container too
