"""Serving on GPUs: a GPU deployment's workers hold run slots, so a GPU is either a run's or a
serving worker's, never both; a GPU deployment is refused where no host has GPUs; the dashboard
shows which slot a serving worker holds. Runs on SQLite and, in `make test`, on PostgreSQL too."""

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from docker.types import DeviceRequest
from rest_framework.test import APIClient

from accounts.models import Researcher
from accounts.services import api_token_create
from hosts.facts import HostFacts
from hosts.services import host_report
from modelstore.models import ModelVersion, RegisteredModel
from runner import scheduling
from runner import serving as agent
from runner.docker_api.serving import serve_kwargs
from serving.errors import NoGpuHost
from serving.models import Deployment, ServeWorker
from serving.services import deployment_scale, worker_begin, worker_end
from submissions.models import Submission
from tests.helpers import sign_in_with_second_factor

S = Submission.Status
GPU0 = scheduling.Slot("gpu-1", "gpu0", "0")
GPU1 = scheduling.Slot("gpu-1", "gpu1", "1")
GPU_SLOTS = {GPU0.label: "0", GPU1.label: "1"}


def report(name, gpus=()):
    return host_report(
        facts=HostFacts(
            name=name,
            cpu_slots=2,
            gpu_ids=tuple(gpus),
            engine_ok=True,
            engine_problem="",
            disk_free_bytes=100 * 1024**3,
            disk_path="/srv/m2d/export-volumes",
        )
    )


def researcher(name):
    user = get_user_model().objects.create_user(name, f"{name}@example.org")
    Researcher.objects.create(user=user, status=Researcher.Status.APPROVED)
    return user


@pytest.fixture
def owner(db):
    return researcher("owner")


def queued(owner, n=1):
    return [
        Submission.objects.create(owner=owner, status=S.QUEUED, archive="x.zip", archive_sha256="0" * 64)
        for _ in range(n)
    ]


def make_version(owner) -> ModelVersion:
    submission = Submission.objects.create(owner=owner, status=S.SUCCEEDED, archive="x.zip", archive_sha256="0" * 64)
    model = RegisteredModel.objects.create(name="clam-malignancy", owner=owner, dataset="clam", task="c")
    return ModelVersion.objects.create(model=model, number=2, submission=submission, created_by=owner)


@pytest.fixture
def gpu_deployment(owner):
    report("gpu-1", gpus=("0", "1"))
    return deployment_scale(by=owner, version=make_version(owner), min_workers=1, gpu=True)


def test_a_gpu_a_serving_worker_holds_takes_no_run_until_the_worker_ends(owner, gpu_deployment, settings):
    settings.M2D_MAX_RUNNING_PER_RESEARCHER = 0
    jobs = queued(owner, 2)
    worker = worker_begin(deployment=gpu_deployment, host="gpu-1", gpu_slots={GPU0.label: "0"})
    assert (worker.slot, worker.gpu_id) == ("gpu-1/gpu0", "0")

    assert scheduling.claim_next(GPU0) is None  # the serving worker's GPU
    run = scheduling.claim_next(GPU1)
    assert (run.pk, run.gpu_id) == (jobs[0].pk, "1")

    worker_end(worker=worker, failed=False, reason="scaled down")
    run = scheduling.claim_next(GPU0)
    assert (run.pk, run.slot, run.gpu_id) == (jobs[1].pk, "gpu-1/gpu0", "0")


def test_a_serving_worker_takes_only_a_gpu_no_run_and_no_worker_holds(owner, gpu_deployment, settings):
    settings.M2D_MAX_RUNNING_PER_RESEARCHER = 0
    queued(owner)
    assert scheduling.claim_next(GPU0).slot == "gpu-1/gpu0"

    first = worker_begin(deployment=gpu_deployment, host="gpu-1", gpu_slots=GPU_SLOTS)
    assert (first.slot, first.gpu_id) == ("gpu-1/gpu1", "1")
    assert worker_begin(deployment=gpu_deployment, host="gpu-1", gpu_slots=GPU_SLOTS) is None  # both taken
    assert ServeWorker.objects.count() == 1


def test_a_cpu_deployment_holds_no_slot(owner):
    deployment = deployment_scale(by=owner, version=make_version(owner), min_workers=1)
    worker = worker_begin(deployment=deployment, host="gpu-1", gpu_slots=GPU_SLOTS)
    assert (deployment.gpu, worker.slot, worker.gpu_id) == (False, "", "")


@pytest.mark.django_db(transaction=True)
def test_a_run_and_a_serving_worker_racing_for_one_gpu_never_both_get_it(settings):
    """A run slot and a serving worker claim the same GPU at once, again and again on the real
    database: each time exactly one of them holds it."""
    settings.M2D_MAX_RUNNING_PER_RESEARCHER = 0
    owner = get_user_model().objects.create_user("racer", "racer@example.org")
    report("gpu-1", gpus=("0",))
    deployment = deployment_scale(by=owner, version=make_version(owner), min_workers=1, gpu=True)
    winners, errors = [], []

    def run_side(out):
        try:
            out.append(scheduling.claim_next(GPU0))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    def serving_side(out):
        try:
            out.append(worker_begin(deployment=deployment, host="gpu-1", gpu_slots={GPU0.label: "0"}))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    for _ in range(15):
        queued(owner)
        run, worker = [], []
        threads = [
            threading.Thread(target=run_side, args=(run,)),
            threading.Thread(target=serving_side, args=(worker,)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert (run[0] is None) != (worker[0] is None), (run, worker)
        winners.append("run" if run[0] else "serving")
        Submission.objects.filter(status=S.RUNNING).update(status=S.SUCCEEDED)
        Submission.objects.filter(status=S.QUEUED).update(status=S.CANCELLED)
        ServeWorker.objects.filter(state=ServeWorker.State.STARTING).update(state=ServeWorker.State.STOPPED)
    assert ServeWorker.objects.count() == winners.count("serving")


def test_a_gpu_deployment_is_refused_where_no_host_has_gpus(owner):
    report("cpu-1")
    version = make_version(owner)
    with pytest.raises(NoGpuHost, match="No host of this platform has GPU slots"):
        deployment_scale(by=owner, version=version, min_workers=1, gpu=True)
    assert not Deployment.objects.filter(gpu=True).exists()

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(by=owner).key}")
    refused = client.put("/api/v1/models/clam-malignancy/2?min_worker=1&gpu=true")
    assert refused.status_code == 409
    assert refused.json()["type"] == "no_gpu_host"
    assert "A host offers its GPUs with M2D_GPU_IDS" in refused.json()["message"]
    assert client.put("/api/v1/models/clam-malignancy/2?min_worker=1&gpu=maybe").status_code == 400
    assert client.put("/api/v1/models/clam-malignancy/2?min_worker=1").status_code == 202  # on CPUs

    report("gpu-1", gpus=("0",))
    assert client.put("/api/v1/models/clam-malignancy/2?min_worker=0&max_worker=0").status_code == 202
    assert client.put("/api/v1/models/clam-malignancy/2?min_worker=1&gpu=true").status_code == 202
    described = client.get("/api/v1/models/clam-malignancy/2").json()["deployment"]
    assert described["gpu"] is True and described["min_workers"] == 1

    stranger = researcher("stranger")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(by=stranger).key}")
    assert other.put("/api/v1/models/clam-malignancy/2?min_worker=2&gpu=true").status_code in (403, 404)
    assert Deployment.objects.get().min_workers == 1


def test_the_container_of_a_gpu_worker_asks_for_its_gpu_only(owner, gpu_deployment, settings):
    worker = worker_begin(deployment=gpu_deployment, host="gpu-1", gpu_slots={GPU1.label: "1"})
    kwargs = serve_kwargs(agent.serve_spec(gpu_deployment, worker, "m2d-submission:1", settings.BASE_DIR))
    assert kwargs["device_requests"] == [DeviceRequest(device_ids=["1"], capabilities=[["gpu"]])]
    assert kwargs["environment"]["M2D_SERVE_DEVICE"] == "cuda"
    assert kwargs["network_mode"] == "none"

    cpu = deployment_scale(by=owner, version=gpu_deployment.version, min_workers=0, max_workers=0, gpu=False)
    cpu_worker = worker_begin(deployment=cpu, host="gpu-1")
    kwargs = serve_kwargs(agent.serve_spec(cpu, cpu_worker, "m2d-submission:1", settings.BASE_DIR))
    assert "device_requests" not in kwargs and kwargs["environment"]["M2D_SERVE_DEVICE"] == "cpu"


def test_the_dashboard_shows_the_gpu_slot_a_serving_worker_holds(owner, gpu_deployment, settings):
    settings.M2D_MAX_RUNNING_PER_RESEARCHER = 0
    queued(owner)
    run = scheduling.claim_next(GPU0)
    worker = worker_begin(deployment=gpu_deployment, host="gpu-1", gpu_slots=GPU_SLOTS)
    admin = get_user_model().objects.create_superuser("steward", "steward@hospital.example", "Staff-pass-1-xyz")
    client = Client()
    sign_in_with_second_factor(client, admin)

    page = client.get("/submissions/dashboard/").content.decode()
    row = page.split('<tr id="host-gpu-1">')[1].split("</tr>")[0]
    assert f'gpu-1/gpu0: <a href="/submissions/{run.pk}/">#{run.pk}</a>' in row
    assert f'gpu-1/gpu1: serving clam-malignancy 2 <span class="muted">(worker {worker.pk}, starting)</span>' in row
    assert "serving:" not in row  # the GPU worker shows in its slot only

    worker_end(worker=worker, failed=False, reason="scaled down")
    row = client.get("/submissions/dashboard/").content.decode().split('<tr id="host-gpu-1">')[1].split("</tr>")[0]
    assert 'gpu-1/gpu1: <span class="muted">free' in row


def test_a_gpu_scale_answers_503_while_runs_hold_every_gpu(owner, settings):
    settings.M2D_MAX_RUNNING_PER_RESEARCHER = 0
    report("gpu-1", gpus=("0",))
    make_version(owner)
    queued(owner)
    run = scheduling.claim_next(GPU0)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(by=owner).key}")

    busy = client.put("/api/v1/models/clam-malignancy/2?min_worker=1&gpu=true")
    assert busy.status_code == 503 and busy["Retry-After"] == "30"
    assert busy.json()["type"] == "no_free_slot"
    assert "needs 1 more GPU slot(s) and 0 are free now" in busy.json()["message"]

    Submission.objects.filter(pk=run.pk).update(status=S.SUCCEEDED)
    assert client.put("/api/v1/models/clam-malignancy/2?min_worker=1&gpu=true").status_code == 202
    worker_begin(deployment=Deployment.objects.get(), host="gpu-1", gpu_slots={GPU0.label: "0"})
    again = client.put("/api/v1/models/clam-malignancy/2?min_worker=1&gpu=true")  # its own worker holds the GPU
    assert again.status_code == 202
