"""The samples as a researcher meets them: both pass the pre-flight check without a warning and run
to success on the platform (real workers, Docker build and sandboxed run, tracking gateway, MLflow
with its auth app); the CLaM one logs every epoch and exports its weights ready for the model store."""

import csv
import io
import json
import subprocess
import sys
import zipfile

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model

from exports.services import export_decide_all, export_request_release
from modelstore.card import validated
from modelstore.services import model_register
from tests.conftest import REPO, make_zip
from tests.helpers import mlflow_runs, upload, wait_finished

SAMPLES = REPO / "sample_code"


def sample_files(name: str) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in (SAMPLES / name).iterdir() if path.is_file()}


def metric_history(researcher, run_id: str, key: str) -> list[tuple[int, float]]:
    response = requests.get(
        f"{settings.MLFLOW_URL}/api/2.0/mlflow/metrics/get-history",
        params={"run_id": run_id, "metric_key": key},
        auth=(researcher.mlflow_username, researcher.mlflow_password),
        timeout=10,
    )
    response.raise_for_status()
    return sorted((m["step"], m["value"]) for m in response.json().get("metrics", []))


def phase_seconds(submission) -> dict[str, float]:
    events = list(submission.events.order_by("at", "id"))
    reached = {event.to_status: event.at for event in events}
    return {
        "build": (reached["queued"] - reached["building"]).total_seconds(),
        "run": (reached[submission.status] - reached["running"]).total_seconds(),
        "total": (reached[submission.status] - events[0].at).total_seconds(),
    }


@pytest.mark.parametrize("sample", ["toy-dataset", "clam-dataset"])
def test_sample_passes_the_preflight_check_without_warnings(sample, tmp_path):
    archive = tmp_path / "submission.zip"
    files = sample_files(sample)
    archive.write_bytes(make_zip(files).getvalue())
    result = subprocess.run(
        [sys.executable, "submissions/intake.py", str(archive)], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"OK: {archive}: {len(files)} files"), result.stdout
    assert "warning" not in result.stdout, result.stdout


@pytest.mark.docker
@pytest.mark.services
def test_toy_sample_succeeds_on_the_platform(client, celery_workers, make_researcher):
    researcher = make_researcher("toy")
    submission = wait_finished(upload(client, researcher.user, sample_files("toy-dataset")))
    assert submission.status == "succeeded", submission.reason + submission.run_log_tail

    (run,) = mlflow_runs(researcher)
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics == {"accuracy": 1.0, "dataset-exists": 1.0}
    cases = len((settings.M2D_DATASET_DIR / "clam-details-case-extrainfo.csv").read_text().splitlines()) - 1
    results = (settings.M2D_EXPORT_ROOT / str(submission.pk) / "results.csv").read_text()
    assert results.splitlines() == ["metric,value", "accuracy,1.0", f"dataset_cases,{cases}"]
    assert [f["path"] for f in submission.export.files] == ["results.csv"]


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.services
def test_clam_sample_trains_logs_every_epoch_and_exports_its_weights(client, celery_workers, make_researcher, settings):
    researcher = make_researcher("clam")
    submission = wait_finished(upload(client, researcher.user, sample_files("clam-dataset")), timeout=600)
    assert submission.status == "succeeded", submission.reason + submission.run_log_tail
    print(f"CLaM sample on the platform, seconds: {phase_seconds(submission)}")

    (run,) = mlflow_runs(researcher)
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["device"] == "cpu"
    images = list(
        csv.DictReader(io.StringIO((settings.M2D_DATASET_DIR / "clam-details-image.csv").read_text()), delimiter=";")
    )
    assert int(params["train_images"]) == sum(row["Split"] == "train" for row in images)
    assert int(params["test_images"]) == sum(row["Split"] == "test" for row in images)
    epochs = int(params["epochs"])

    # One point per epoch for each metric, in MLflow's history (not only the last value).
    history = {
        key: metric_history(researcher, run["info"]["run_id"], key)
        for key in ("train_loss", "train_accuracy", "train_auc", "test_loss", "test_accuracy")
    }
    for key, points in history.items():
        assert [step for step, _ in points] == list(range(1, epochs + 1)), key
    assert all(
        0.0 <= value <= 1.0 for key in ("train_accuracy", "train_auc", "test_accuracy") for _, value in history[key]
    )
    # The planted lesions are learnable: the network fits its training images better at the end.
    assert history["train_loss"][-1][1] < history["train_loss"][0][1], history["train_loss"]
    assert submission.metrics["train_loss"] == pytest.approx(history["train_loss"][-1][1])

    # The export holds the per-epoch table (the same numbers as MLflow) and the model folder the
    # model store registers: weights, the predict contract and the card.
    export_dir = settings.M2D_EXPORT_ROOT / str(submission.pk)
    assert sorted(f["path"] for f in submission.export.files) == [
        "model/m2d-model.json",
        "model/model.pt",
        "model/predict.py",
        "results.csv",
    ]
    assert (export_dir / "model" / "predict.py").read_bytes() == (SAMPLES / "clam-dataset" / "predict.py").read_bytes()
    card = validated(json.loads((export_dir / "model" / "m2d-model.json").read_text()))  # the store's schema
    assert card["entrypoint"] == "predict.py:Model" and card["intended_use"] == "research use only"
    assert [view["name"] for view in card["inputs"]] == ["LCC", "LMLO", "RCC", "RMLO"]
    table = list(csv.DictReader((export_dir / "results.csv").read_text().splitlines()))
    assert [int(row["epoch"]) for row in table] == list(range(1, epochs + 1))
    assert [float(row["train_loss"]) for row in table] == pytest.approx([v for _, v in history["train_loss"]])
    # torch.save writes a zip holding the pickled state_dict and one file per tensor.
    with zipfile.ZipFile(export_dir / "model" / "model.pt") as weights:
        names = weights.namelist()
    assert any(name.endswith("/data.pkl") for name in names), names
    assert len([name for name in names if "/data/" in name]) >= 8, names

    # Released, the model folder registers in the model store as it is.
    settings.M2D_EXPORT_TWO_PERSON_RULE = False
    reviewer = get_user_model().objects.create_user(f"reviewer-{submission.pk}", is_staff=True)
    export_request_release(by=researcher.user, submission=submission, justification="The trained model for the store.")
    waiting = submission.export.entries.filter(state="held")
    seen = {e.pk: e.sha256 for e in waiting}
    # The model's disclosure risk is still being assessed, or the ten cases of the sample are too
    # few to assess it: its release takes two admins, each with a reason.
    second = get_user_model().objects.create_user(f"reviewer-2-{submission.pk}", is_staff=True)
    reason = "Synthetic sample data: nothing of a patient can leave."
    export_decide_all(by=reviewer, export=submission.export, decision="release", seen=seen, comment=reason)
    if submission.export.entries.filter(state="held").exists():
        export_decide_all(by=second, export=submission.export, decision="release", seen=seen, comment=reason)
    assert not submission.export.entries.filter(state="held").exists()
    version = model_register(by=researcher.user, submission=submission, paths=["model/"], name=f"clam-{submission.pk}")
    assert sorted(version.files.values_list("path", flat=True)) == ["m2d-model.json", "model.pt", "predict.py"]
    assert (
        version.card["entrypoint"] == "predict.py:Model"
        and version.card["training_data"]["submission"] == submission.pk
    )
    assert version.metrics["train_loss"] == pytest.approx(history["train_loss"][-1][1])
