"""Serving on the real engine: a released, registered model is deployed into a sealed container of
its submission's image and answers through /predictions and the Open Inference Protocol; a model
that hangs, or that swaps its socket for a link to the host's Docker socket, is refused and
replaced; from inside, the worker sees no network, no data set and no Docker socket."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess

import numpy as np
import pytest

from accounts.services import api_token_create
from runner import serving as agent
from serving.models import Prediction
from tests.cli.test_cli import run_m2d

from . import conftest as shared
from .conftest import npy, png, ready

FILES, deployed = shared.FILES, shared.deployed  # other test modules import them from here

pytestmark = [pytest.mark.docker, pytest.mark.services]


def test_a_deployed_model_answers_through_predictions_and_v2(deployed, api, client):
    version, deployment, owner = deployed
    assert len(ready(deployment)) == 1, list(deployment.workers.values("state", "reason"))
    caller = api(owner, scopes=["predict"])

    answer = caller.post("/predictions/toy-scoring", data=png([[10, 20], [30, 40]]), content_type="image/png")
    assert answer.status_code == 200, answer.content
    assert answer.json()["score"] == pytest.approx(50.0)
    assert answer["X-M2D-Model-Version"] == "toy-scoring/1"

    body = {
        "inputs": [
            {
                "name": "view",
                "datatype": "BYTES",
                "shape": [1],
                "data": [base64.b64encode(npy(np.full((4, 4), 3, np.uint8))).decode()],
                "parameters": {"content_type": "application/x-npy"},
            }
        ]
    }
    v2 = caller.post("/v2/models/toy-scoring/versions/1/infer", data=body, format="json")
    assert v2.status_code == 200, v2.content
    outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    assert outputs["score"] == [pytest.approx(6.0)] and v2.json()["model_version"] == "1"
    assert caller.get("/v2/models/toy-scoring/ready").json() == {"name": "toy-scoring", "ready": True}

    # the seed's own command shape: HTTP basic with the API token as the password
    token = caller._credentials["HTTP_AUTHORIZATION"].split()[1]
    basic = base64.b64encode(f"{owner.username}:{token}".encode()).decode()
    seed = client.put(
        "/predictions/toy-scoring", data=png([[5]]), content_type="image/png", HTTP_AUTHORIZATION=f"Basic {basic}"
    )
    assert seed.status_code == 200, seed.content
    by_mail = base64.b64encode(f"{owner.email}:{token}".encode()).decode()  # the name people know
    assert (
        client.put(
            "/predictions/toy-scoring", data=png([[5]]), content_type="image/png", HTTP_AUTHORIZATION=f"Basic {by_mail}"
        ).status_code
        == 200
    )
    portal_password = base64.b64encode(f"{owner.username}:not-a-token".encode()).decode()
    assert (
        client.put(
            "/predictions/toy-scoring",
            data=png([[5]]),
            content_type="image/png",
            HTTP_AUTHORIZATION=f"Basic {portal_password}",
        ).status_code
        == 401
    )

    audit = list(Prediction.objects.filter(model_name="toy-scoring").order_by("at"))
    assert [p.status for p in audit] == [200, 200, 200, 200]
    assert audit[0].inputs[0]["content_type"] == "image/png" and len(audit[0].inputs[0]["sha256"]) == 64


def test_from_inside_the_worker_there_is_no_way_out(deployed, api, settings):
    version, deployment, owner = deployed
    settings.M2D_SERVE_RESPONSE_TIMEOUT = 60  # a failing DNS lookup may take its time
    answer = api(owner, scopes=["predict"]).post(
        "/predictions/toy-scoring", data=npy(np.full((2, 2), 3, np.uint8)), content_type="application/x-npy"
    )
    assert answer.status_code == 200, answer.content
    facts = json.loads(answer.json()["sandbox"])
    assert facts["interfaces"] == ["lo"] and facts["uid"] != 0
    assert facts["routes"] == [] and facts["dns"] != "answers"
    assert not facts["dataset"] and not facts["export"] and not facts["docker_socket"]
    assert not facts["model_dir_writable"]


def test_bad_input_is_refused_before_the_model_sees_it(deployed, api, approved):
    version, deployment, owner = deployed
    caller = api(owner, scopes=["predict"])
    big = caller.post("/predictions/toy-scoring", data=png(np.zeros((65, 65))), content_type="image/png")
    assert big.status_code == 400 and "at most [64, 64]" in big.json()["message"]
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    objects = caller.post("/predictions/toy-scoring", data=pickled.getvalue(), content_type="application/x-npy")
    assert objects.status_code == 400 and "Python objects" in objects.json()["message"]
    assert caller.post("/predictions/toy-scoring", data=b"GIF89a", content_type="image/gif").status_code == 400
    assert caller.post("/predictions/no-such-model", data=png([[5]]), content_type="image/png").status_code == 404
    # someone else's private model answers exactly like a missing one
    stranger = api(approved["other"], scopes=["predict"])
    hidden = stranger.post("/predictions/toy-scoring", data=png([[5]]), content_type="image/png")
    assert hidden.status_code == 404 and hidden.json()["message"] == "Model not found: toy-scoring"
    without_scope = api(owner, scopes=["models:read"])  # (replaces the owner's token)
    refused = without_scope.post("/predictions/toy-scoring", data=png([[5]]), content_type="image/png")
    assert refused.status_code == 403 and "predict" in refused.json()["detail"]
    assert caller.post("/predictions/toy-scoring", data=png([[5]]), content_type="image/png").status_code == 401
    assert len(ready(deployment)) == 1  # none of this reached the worker


def test_a_model_that_hangs_gets_504_and_is_replaced(deployed, api):
    version, deployment, owner = deployed
    first = ready(deployment)[0]
    hang = api(owner, scopes=["predict"]).post(
        "/predictions/toy-scoring", data=npy(np.ones((2, 2), np.uint8)), content_type="application/x-npy"
    )
    assert hang.status_code == 504, hang.content
    first.refresh_from_db()
    assert first.state == "failed" and "did not answer within 3 s" in first.reason
    agent.reconcile()
    replacement = ready(deployment)
    assert len(replacement) == 1 and replacement[0].pk != first.pk


def test_a_socket_swapped_for_a_link_to_the_docker_socket_is_refused(deployed, api):
    version, deployment, owner = deployed
    caller = api(owner, scopes=["predict"])
    swap = caller.post(
        "/predictions/toy-scoring", data=npy(np.full((2, 2), 2, np.uint8)), content_type="application/x-npy"
    )
    assert swap.status_code == 200  # the model answered, then left a link where its socket was
    worker = ready(deployment)[0]
    assert os.path.islink(agent.socket_path(worker.pk))
    refused = caller.post("/predictions/toy-scoring", data=png([[5]]), content_type="image/png")
    assert refused.status_code == 502 and "replaced" in refused.json()["message"]
    worker.refresh_from_db()
    assert worker.state == "failed" and "refused" in worker.reason


def test_scaling_through_the_management_api(deployed, api, approved):
    version, deployment, owner = deployed
    manager = api(owner, scopes=["models:read", "models:manage"])
    url = "/api/v1/models/toy-scoring/1"
    assert manager.get(url).json()["deployment"]["workers"][0]["status"] == "ready"

    bad = manager.put(f"{url}?min_worker=2&max_worker=1")
    assert bad.status_code == 400 and bad.json()["message"] == "max_worker cannot be less than min_worker."
    stranger = api(approved["other"], scopes=["models:read", "models:manage"]).put(f"{url}?min_worker=3")
    assert stranger.status_code == 404  # a private model of someone else answers like a missing one

    started = manager.put(f"{url}?min_worker=2&max_worker=2")
    assert started.status_code == 202 and started.json() == {"status": "Processing worker updates..."}
    agent.reconcile()  # what the maintenance worker does on the message the call sent
    done = manager.put(f"{url}?min_worker=2&max_worker=2&synchronous=true&timeout=5")
    assert done.status_code == 200 and done.json()["status"] == "Workers scaled to 2 for model: toy-scoring, version: 1"
    assert [w["status"] for w in manager.get(url).json()["deployment"]["workers"]] == ["ready", "ready"]

    waiting = manager.put(f"{url}?min_worker=3&max_worker=3&synchronous=true&timeout=1")  # nobody starts the third
    assert waiting.status_code == 504 and "2 of 3 ready" in waiting.json()["status"]
    agent.reconcile()  # the third starts: that scale is over, and another may begin
    assert manager.put(f"{url}?min_worker=1").status_code == 202
    agent.reconcile()
    assert len(ready(deployment)) == 1


def test_m2d_predict_and_the_seed_s_curl_command(portal, deployed, tmp_path):
    version, deployment, owner = deployed
    token = api_token_create(by=owner, scopes=["predict"]).key
    view = tmp_path / "view.png"
    view.write_bytes(png([[4, 8], [12, 16]]))

    cli = run_m2d(
        ["predict", "toy-scoring", str(view)], {**os.environ, "M2D_URL": portal, "M2D_TOKEN": token}, tmp_path
    )
    assert cli.returncode == 0, cli.stderr
    assert "toy-scoring/1 answered:" in cli.stdout and "score: 20.0" in cli.stdout

    named = run_m2d(
        ["predict", "toy-scoring", f"view={view}", "--json"],
        {**os.environ, "M2D_URL": portal, "M2D_TOKEN": token},
        tmp_path,
    )
    assert named.returncode == 0 and json.loads(named.stdout)["score"] == 20.0
    wrong = run_m2d(
        ["predict", "toy-scoring", f"side={view}"], {**os.environ, "M2D_URL": portal, "M2D_TOKEN": token}, tmp_path
    )
    assert wrong.returncode == 2 and "missing view; unknown side" in wrong.stderr

    curl = subprocess.run(
        ["curl", "-s", "--user", f"{owner.username}:{token}", f"{portal}/predictions/toy-scoring", "-T", str(view)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(curl.stdout)["score"] == 20.0
