"""MLflow pyfunc models: a released folder that mlflow.sklearn.save_model wrote (an `MLmodel`, no
predict.py) is registered with `"entrypoint": "MLmodel"` and served by mlflow.pyfunc.load_model
inside the sealed worker, from the submission's own image; the registration says what to change
when the card and the folder disagree."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from modelstore.errors import InvalidCard
from modelstore.services import model_register
from serving.models import Prediction

from . import conftest as shared
from .conftest import npy, ready

deployed = shared.deployed

pytestmark = [pytest.mark.docker, pytest.mark.services]

# Run in the platform's runtime image, as a submission's main.py would: the pyfunc is saved with
# the mlflow and scikit-learn the serving worker will load it with.
TRAIN = """
import json

import mlflow.sklearn
import numpy as np
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(7)
features = rng.normal(size=(200, 4))
labels = (features[:, 0] + features[:, 1] > 0).astype(int)
classifier = LogisticRegression().fit(features, labels)
cases = np.array([[2.0, 2.0, 0.0, 0.0], [-2.0, -2.0, 0.0, 0.0], [0.1, -0.3, 1.0, 1.0]])
mlflow.sklearn.save_model(
    classifier,
    "/out/model",
    signature=infer_signature(features, classifier.predict_proba(features)),
    pyfunc_predict_fn="predict_proba",
)
np.save("/out/cases.npy", cases)
json.dump(classifier.predict_proba(cases).tolist(), open("/out/expected.json", "w"))
"""
CARD = {
    "summary": "A logistic regression on four features, saved by mlflow.sklearn.",
    "entrypoint": "MLmodel",
    "inputs": [{"name": "features", "formats": ["application/x-npy"], "datatype": "FP64", "max_dims": [64, 4]}],
    "outputs": [{"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]}],
    "licence": "CC-BY-4.0",
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pyfunc")
    out.chmod(0o777)
    image = os.environ.get("M2D_RUNTIME_IMAGE", "m2d-runtime:latest")
    command = ["docker", "run", "--rm", "--network", "none", "--user", "1000:1000", "-e", "HOME=/tmp"]
    command += ["-e", "MLFLOW_DISABLE_TELEMETRY=true", "-v", f"{out}:/out", image, "python3", "-c", TRAIN]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture
def model_files(saved):
    folder = saved / "model"
    files = {f"model/{p.relative_to(folder)}": p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert "model/MLmodel" in files and not any(name.endswith("predict.py") for name in files)
    return {**files, "model/m2d-model.json": json.dumps(CARD).encode()}


def test_an_mlflow_sklearn_folder_answers_through_predictions_and_v2(deployed, api, saved):
    version, deployment, owner = deployed
    assert len(ready(deployment)) == 1, list(deployment.workers.values("state", "reason"))
    deployment.refresh_from_db()
    print(f"\npyfunc worker ready {deployment.last_cold_start_seconds:.1f} s after its container started")
    caller = api(owner, scopes=["predict"])
    cases = np.load(saved / "cases.npy")
    expected = json.loads((saved / "expected.json").read_text())

    answer = caller.post("/predictions/toy-scoring", data=npy(cases), content_type="application/x-npy")
    assert answer.status_code == 200, answer.content
    assert np.allclose(answer.json()["probabilities"], expected)
    assert answer.json()["probabilities"][0][1] > 0.9 and answer.json()["probabilities"][1][1] < 0.1

    tensor = {
        "name": "features",
        "datatype": "BYTES",
        "shape": [1],
        "data": [base64.b64encode(npy(cases[:1])).decode()],
        "parameters": {"content_type": "application/x-npy"},
    }
    v2 = caller.post("/v2/models/toy-scoring/versions/1/infer", data={"inputs": [tensor]}, format="json")
    assert v2.status_code == 200, v2.content
    (output,) = v2.json()["outputs"]
    assert output["name"] == "probabilities" and np.allclose(output["data"], expected[:1])

    # A case the model cannot take (three features, not four) is the model's error, not a crash.
    wrong = caller.post("/predictions/toy-scoring", data=npy(cases[:, :3]), content_type="application/x-npy")
    assert wrong.status_code == 502, wrong.content
    assert [p.status for p in Prediction.objects.order_by("at")] == [200, 200, 502]


def test_the_card_and_an_mlflow_folder_must_agree(released, model_files):
    card = {k: v for k, v in CARD.items() if k != "entrypoint"}
    submission = released({**model_files, "model/m2d-model.json": json.dumps(card).encode()}, held=())
    with pytest.raises(InvalidCard, match='set "entrypoint": "MLmodel"'):
        model_register(by=submission.owner, submission=submission, paths=["model/"], name="toy-pyfunc")

    without_mlmodel = {k: v for k, v in model_files.items() if k != "model/MLmodel"}
    submission = released(without_mlmodel, held=())
    with pytest.raises(InvalidCard, match="no MLmodel file is at the top"):
        model_register(by=submission.owner, submission=submission, paths=["model/"], name="toy-pyfunc")

    # Said in the card sent with the registration, it serves as a pyfunc.
    submission = released({**model_files, "model/m2d-model.json": json.dumps(card).encode()}, held=())
    version = model_register(
        by=submission.owner, submission=submission, paths=["model/"], name="toy-pyfunc", card={"entrypoint": "MLmodel"}
    )
    assert version.card["entrypoint"] == "MLmodel"
