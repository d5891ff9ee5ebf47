"""Batch jobs, quotas and the audit list of a served model. A zip of cases goes to a real
serve-batch worker, which asks the deployed toy model case by case through the gateway; unsafe or
badly laid out zips are refused before any job exists; over-quota callers get 429 with
Retry-After in each endpoint's own error shape."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import time
import zipfile

import numpy as np
import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from modelstore.services import model_register
from runner import serving as agent
from serving import batch
from serving.models import BatchJob, Prediction
from serving.services import deployment_scale, prediction_record
from tests.conftest import WorkerPool

from .conftest import npy, png, ready

PREDICT = """
import time
import numpy as np


class Model:
    def load(self, model_dir, device):
        pass

    def predict(self, inputs, parameters):
        image = np.asarray(inputs["view"])
        if int(image.flat[0]) == 1:
            time.sleep(10**6)
        return {"score": float(image.mean()) * 2}
"""
CARD = {
    "summary": "A toy scorer: twice the mean of the view.",
    "entrypoint": "predict.py:Model",
    "inputs": [
        {"name": "view", "formats": ["image/png", "application/x-npy"], "datatype": "UINT8", "max_dims": [64, 64]}
    ],
    "outputs": [{"name": "score", "datatype": "FP64", "shape": [1]}],
    "licence": "CC-BY-4.0",
}
FILES = {"model/predict.py": PREDICT.encode(), "model/m2d-model.json": json.dumps(CARD).encode()}

pytestmark = [pytest.mark.docker, pytest.mark.services]


def cases_zip(files: dict[str, bytes], links: tuple[str, ...] = ()) -> io.BytesIO:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    out.seek(0)
    out.name = "cases.zip"
    return out


def fresh_quota(user) -> None:
    cache.delete_many([f"throttle_{scope}_{user.pk}" for scope in ("predict", "batch")])


def send(caller, files, version="1", **kwargs):
    return caller.post(
        f"/api/v1/models/toy-scoring/{version}/batch-jobs", {"cases": cases_zip(files, **kwargs)}, format="multipart"
    )


def wait_ended(caller, url: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = caller.get(url).json()
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.5)
    raise AssertionError(f"the batch job did not end: {body}")


@pytest.fixture
def model_files():
    return FILES


@pytest.fixture
def batch_worker(deployed, settings, smtp_server):
    """A real serve-batch worker that reaches this test's serving workers and media folder; it
    sends its reconcile requests to a queue nobody reads, so a worker it loses stays lost."""
    pool = WorkerPool(
        smtp_server.port,
        prefix=f"batch-{os.getpid()}-",
        overrides={
            "M2D_SERVE_DIR": str(settings.M2D_SERVE_DIR),
            "M2D_SERVE_RESPONSE_TIMEOUT": "3",
            "M2D_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "M2D_BATCH_WORKER_WAIT_SECONDS": "3",
        },
        roles=("batch",),
    ).start()
    settings.M2D_QUEUE_SERVE_BATCH = pool.all_queues["batch"]
    yield pool
    pool.stop()


def test_a_zip_of_cases_is_answered_case_by_case_by_a_real_worker(batch_worker, deployed, api, approved, settings):
    version, deployment, owner = deployed
    caller = api(owner, scopes=["predict"])
    fresh_quota(owner)
    created = send(
        caller,
        {
            "a.png": png([[10, 20], [30, 40]]),
            "b.npy": npy(np.full((4, 4), 3, np.uint8)),
            "c-too-big.png": png(np.zeros((65, 65))),
        },
    )
    assert created.status_code == 202, created.content
    job = created.json()
    assert created["Location"] == job["url"] and job["total"] == 3 and job["status"] == "queued"

    ended = wait_ended(caller, job["url"])
    assert ended["status"] == "succeeded", ended
    assert (ended["done"], ended["failed"], ended["pending"]) == (2, 1, 0)

    results = caller.get(f"{job['url']}/results?format=json").json()
    by_case = {c["case"]: c for c in results["cases"]}
    assert list(by_case) == ["a.png", "b.npy", "c-too-big.png"]
    assert by_case["a.png"]["outputs"]["score"] == pytest.approx(50.0)
    assert ready(deployment)  # every case went to the deployment's worker
    assert by_case["b.npy"]["outputs"]["score"] == pytest.approx(6.0)
    assert by_case["c-too-big.png"]["status"] == 400 and "at most [64, 64]" in by_case["c-too-big.png"]["error"]
    table = list(csv.DictReader(io.StringIO(caller.get(f"{job['url']}/results?format=csv").content.decode())))
    assert [(r["case"], r["status"], r["score"]) for r in table][:2] == [
        ("a.png", "200", "50.0"),
        ("b.npy", "200", "6.0"),
    ]

    # the same audit rows as /predictions, and the zip is not kept once the job has ended
    audit = Prediction.objects.filter(version=version, endpoint="batch").order_by("at")
    assert [p.status for p in audit] == [200, 200, 400]
    assert str(audit[0].uuid) == by_case["a.png"]["prediction"]
    assert not BatchJob.objects.get(uuid=job["id"]).archive

    # someone else's job answers like a missing one; staff see it
    assert api(approved["other"], scopes=["predict"]).get(job["url"]).status_code == 404
    staff = APIClient()
    staff.force_login(approved["admin1"])
    assert staff.get(job["url"]).json()["done"] == 2

    # a job whose message the broker lost is sent again by the maintenance task
    batch_queue, settings.M2D_QUEUE_SERVE_BATCH = settings.M2D_QUEUE_SERVE_BATCH, f"lost-{os.getpid()}"
    lost = send(caller, {"a.png": png([[2, 4]])}).json()
    settings.M2D_QUEUE_SERVE_BATCH = batch_queue
    assert batch.batch_jobs_wake(older_than=60) == 0  # too young to be called lost
    assert batch.batch_jobs_wake(older_than=0) == 1
    assert wait_ended(caller, lost["url"])["done"] == 1

    # a model that hangs loses its worker; with none ready again, the job stops and keeps what it has
    stuck = send(caller, {"x.npy": npy(np.ones((2, 2), np.uint8)), "y.png": png([[5]])})
    assert stuck.status_code == 202
    failed = wait_ended(caller, stuck.json()["url"])
    assert failed["status"] == "failed" and "no ready worker" in failed["reason"], failed
    rows = caller.get(f"{stuck.json()['url']}/results").json()["cases"]
    assert [(r["case"], r["status"]) for r in rows] == [("x.npy", 504), ("y.png", None)]
    assert rows[1]["error"] == "not run"
    agent.reconcile()  # the deployed fixture's teardown finds a ready worker again


def test_unsafe_or_misshapen_zips_are_refused_before_a_job_exists(released, api, settings):
    settings.M2D_QUEUE_OPS = "batch-tests-start-no-workers"
    submission = released(FILES, held=())
    version = model_register(by=submission.owner, submission=submission, paths=["model/"], name="toy-scoring")
    caller = api(submission.owner, scopes=["predict"])
    fresh_quota(submission.owner)

    undeployed = send(caller, {"a.png": png([[1]])})
    assert undeployed.status_code == 409 and undeployed.json()["type"] == "not_deployed"
    deployment_scale(by=submission.owner, version=version, min_workers=1)

    def refused(files, **kwargs):
        answer = send(caller, files, **kwargs)
        assert answer.status_code in (400, 413), answer.content
        return answer.json()["message"]

    assert "'..'" in refused({"../evil.png": png([[1]])})
    assert "symbolic link" in refused({"a.png": png([[1]])}, links=("b.png",))
    assert "Zip bombs are refused" in refused({"bomb.npy": b"\0" * (8 * 1024**2)})
    assert "names no input" in refused({"case1/LCC.png": png([[1]]), "case2/view.png": png([[1]])})
    assert "nested too deep" in refused({"case1/deep/view.png": png([[1]]), "case2/view.png": png([[1]])})
    settings.M2D_BATCH_MAX_CASES = 2
    assert "at most 2 (M2D_BATCH_MAX_CASES)" in refused({f"{n}.png": png([[n]]) for n in range(3)})
    settings.M2D_BATCH_MAX_ZIP_BYTES = 1000
    assert send(caller, {"a.npy": os.urandom(5000)}).status_code == 413
    assert BatchJob.objects.count() == 0

    # one top folder around the cases is read from inside it
    settings.M2D_BATCH_MAX_ZIP_BYTES = 10**6
    wrapped = send(caller, {"cases/p1/view.png": png([[1]]), "cases/p2/view.png": png([[2]])})
    assert wrapped.status_code == 202, wrapped.content
    assert BatchJob.objects.get().cases.count() == 2
    assert send(APIClient(), {"a.png": png([[1]])}).status_code == 401
    no_scope = api(submission.owner, scopes=["models:read"])
    assert send(no_scope, {"a.png": png([[1]])}).status_code == 403


def test_quotas_answer_429_with_retry_after_in_each_endpoint_s_shape(released, api, settings):
    settings.M2D_QUEUE_OPS = "batch-tests-start-no-workers"
    submission = released(FILES, held=())
    model_register(by=submission.owner, submission=submission, paths=["model/"], name="toy-scoring")
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"predict": "2/min", "batch": "1/day"},
    }
    fresh_quota(submission.owner)
    caller = api(submission.owner, scopes=["predict"])

    for _ in range(2):  # not deployed: 503, still counted
        assert caller.post("/predictions/toy-scoring", data=png([[5]]), content_type="image/png").status_code == 503
    over = caller.post("/predictions/toy-scoring", data=png([[5]]), content_type="image/png")
    assert over.status_code == 429 and 0 < int(over["Retry-After"]) <= 60
    assert over.json()["code"] == 429 and over.json()["type"] == "throttled"
    assert "2/min" in over.json()["message"] and "M2D_PREDICT_RATE" in over.json()["message"]
    v2 = caller.get("/v2/models/toy-scoring/ready")
    assert v2.status_code == 429 and set(v2.json()) == {"error"} and v2["Retry-After"]

    assert send(caller, {"a.png": png([[1]])}).status_code == 409  # the day's one batch, refused as undeployed
    batch_over = send(caller, {"a.png": png([[1]])})
    assert batch_over.status_code == 429 and int(batch_over["Retry-After"]) > 3600
    assert batch_over.json()["type"] == "throttled" and "M2D_BATCH_RATE" in batch_over.json()["message"]


def test_the_audit_list_is_the_owner_s_and_staff_s_newest_first(released, api, approved, settings):
    submission = released(FILES, held=())
    version = model_register(
        by=submission.owner, submission=submission, paths=["model/"], name="toy-scoring", visibility="signed_in"
    )
    for status in (200, 400, 503):
        prediction_record(
            user=approved["other"], model_name="toy-scoring", version=version, endpoint="predictions", status=status
        )
    url = "/api/v1/models/toy-scoring/1/predictions"
    owner = api(submission.owner, scopes=["models:read"])
    first = owner.get(f"{url}?limit=2").json()
    assert [p["status"] for p in first["predictions"]] == [503, 400]
    assert first["predictions"][0]["user"] == approved["other"].username
    rest = owner.get(url, {"limit": 2, "next_page_token": first["next_page_token"]}).json()
    assert [p["status"] for p in rest["predictions"]] == [200] and rest["next_page_token"] is None
    assert owner.get(f"{url}?next_page_token=bogus").status_code == 400

    # whoever may use the model does not read who else did
    other_caller = api(approved["other"], scopes=["models:read"])
    assert other_caller.get("/api/v1/models/toy-scoring/1").status_code == 200
    other = other_caller.get(url)
    assert other.status_code == 404 and other.json()["type"] == "model_not_found"
    staff = APIClient()
    staff.force_login(approved["admin1"])
    assert len(staff.get(url).json()["predictions"]) == 3


@pytest.mark.parametrize("start", list(batch.MOVES))
def test_a_job_moves_only_along_its_table(start, released, settings):
    settings.M2D_QUEUE_OPS = "batch-tests-start-no-workers"
    submission = released(FILES, held=())
    version = model_register(by=submission.owner, submission=submission, paths=["model/"], name="toy-scoring")
    for to in batch.MOVES:
        job = BatchJob.objects.create(user=submission.owner, version=version, total=0, status=start)
        if to in batch.MOVES[start]:
            assert batch._move(job, to) and BatchJob.objects.get(pk=job.pk).status == to
        else:
            with pytest.raises(batch.IllegalMove):
                batch._move(job, to)
    stale = BatchJob.objects.create(user=submission.owner, version=version, total=0, status=start)
    BatchJob.objects.filter(pk=stale.pk).update(status=BatchJob.Status.FAILED if start != "failed" else "queued")
    if batch.MOVES[start]:  # another process moved it first: this move does nothing
        assert not batch._move(stale, next(iter(batch.MOVES[start])))
