"""Serving when people and processes get in each other's way, on the real engine: two scales of one
version at once, the default version moved under a stream of predictions, a raw body sent to a
model of several inputs, and kill -9 of a worker's server, of the web process answering
/predictions and of the Celery worker that runs the reconciler. Each test prints what it measured
(`make test PYTEST_ARGS="... -s"` shows them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import requests
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from modelstore.services import model_register
from ops.metrics import render
from runner import serving as agent
from serving import selectors as serving_selectors
from serving.errors import ScaleInProgress
from serving.models import Deployment, Prediction, ServeWorker
from serving.services import deployment_scale
from tests.conftest import REPO, WorkerPool, _worker_database_url, free_port
from tests.reliability.test_crashes import wait_until
from tests.reliability.test_restarts import start_web

from .conftest import CARD, FILES, npy, png, ready

pytestmark = [pytest.mark.docker, pytest.mark.services]

VIEWS = ("LCC", "LMLO", "RCC", "RMLO")
FOUR_VIEWS = {
    **CARD,
    "inputs": [{"name": view, "formats": ["image/png"], "datatype": "UINT8", "max_dims": [64, 64]} for view in VIEWS],
}
# The toy model (conftest.PREDICT) with another weight: its scores tell which version answered.
OTHER_WEIGHT = {
    "model2/weight.txt": b"3.0\n",
    "model2/predict.py": FILES["model/predict.py"],
    "model2/m2d-model.json": FILES["model/m2d-model.json"],
}
SLOW_MODE = 207  # conftest.PREDICT sleeps 3 s


@pytest.fixture
def model_files():
    return {
        **FILES,
        **OTHER_WEIGHT,
        "views/weight.txt": b"1.0\n",
        "views/predict.py": FILES["model/predict.py"],
        "views/m2d-model.json": json.dumps(FOUR_VIEWS).encode(),
    }


@pytest.fixture
def serve_settings(settings):
    settings.M2D_PREDICT_RATE = "100000/min"  # streams of predictions, not the quota, are tested here
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "predict": "100000/min"},
    }


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def containers(deployment) -> list[str]:
    """The engine's containers labelled with the deployment, running or not."""
    labels = [f"label=org.m2d.instance={django_settings.M2D_INSTANCE}", f"label=org.m2d.deployment={deployment.pk}"]
    listed = subprocess.run(
        ["docker", "ps", "-a", "--filter", labels[0], "--filter", labels[1], "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(listed.stdout.split())


def names(workers) -> list[str]:
    return sorted(agent.worker_name(w.pk) for w in workers)


def same_token(client: APIClient) -> APIClient:
    """Another client with the same token (a new token would revoke the first)."""
    other = APIClient()
    other.credentials(**client._credentials)
    return other


def web_env(settings) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": _worker_database_url(),
        "M2D_EXPORT_STORAGE": "local",
        "M2D_EXPORT_ROOT": str(settings.M2D_EXPORT_ROOT),
        "M2D_MODEL_STORE_ROOT": settings.STORAGES["models"]["OPTIONS"]["location"],
        "M2D_SERVE_DIR": str(settings.M2D_SERVE_DIR),
        "M2D_SERVE_RESPONSE_TIMEOUT": str(settings.M2D_SERVE_RESPONSE_TIMEOUT),
        "M2D_PREDICT_RATE": "100000/min",
    }


def test_a_second_scale_while_one_is_on_its_way_gets_409_and_the_same_scale_waits_for_it(deployed, api):
    version, deployment, owner = deployed
    manager = api(owner, scopes=["models:read", "models:manage"])
    url = "/api/v1/models/toy-scoring/1"

    # two calls at once, asking for different counts: one is accepted, the other refused
    answers = {}
    barrier = threading.Barrier(2)

    def scale(query):
        caller = same_token(manager)
        barrier.wait()
        answers[query] = caller.put(f"{url}?{query}")
        connection.close()

    racers = [
        threading.Thread(target=scale, args=(q,)) for q in ("min_worker=2&max_worker=2", "min_worker=2&max_worker=3")
    ]
    for thread in racers:
        thread.start()
    for thread in racers:
        thread.join()
    assert sorted(a.status_code for a in answers.values()) == [202, 409], {q: a.content for q, a in answers.items()}
    [won] = [q for q, a in answers.items() if a.status_code == 202]
    [lost] = [a for a in answers.values() if a.status_code == 409]
    assert lost.json()["type"] == "scale_in_progress"
    assert "Another scale of toy-scoring version 1 is in progress" in lost.json()["message"]
    assert "1 of 2 workers ready" in lost.json()["message"]

    # a synchronous call with the same counts waits for the scale on its way; another count meanwhile gets 409
    waited = {}

    def wait_for_it():
        waited["answer"] = same_token(manager).put(f"{url}?{won}&synchronous=true&timeout=120")
        connection.close()

    waiting = threading.Thread(target=wait_for_it)
    waiting.start()
    time.sleep(0.5)
    refused, took = timed(lambda: manager.put(f"{url}?min_worker=4&max_worker=4"))
    assert refused.status_code == 409, refused.content
    agent.reconcile()  # what the maintenance worker does on the message the accepted call sent
    waiting.join()
    assert waited["answer"].status_code == 200, waited["answer"].content
    assert waited["answer"].json()["status"] == "Workers scaled to 2 for model: toy-scoring, version: 1"
    assert containers(deployment) == names(ready(deployment))

    # once the scale is over, the next one is accepted; a stop is never refused
    assert manager.put(f"{url}?min_worker=3&max_worker=3").status_code == 202
    assert manager.put(f"{url}?min_worker=1&max_worker=1").status_code == 409
    assert manager.put(f"{url}?min_worker=0&max_worker=0").status_code == 202
    agent.reconcile()
    assert ready(deployment) == [] and containers(deployment) == []
    assert manager.put(f"{url}?min_worker=1").status_code == 202
    agent.reconcile()
    assert len(ready(deployment)) == 1 and len(containers(deployment)) == 1
    scaled = [e.comment for e in deployment.events.exclude(by=None)]
    assert scaled.count("scaled to 2–2 workers") + scaled.count("scaled to 2–3 workers") == 1  # the loser left no trace
    print(f"\nscale while another is on its way: 409 in {took * 1000:.0f} ms")


def test_a_scale_is_over_once_a_worker_failed_or_its_time_ran_out(released, settings):
    settings.M2D_QUEUE_OPS = "serving-tests-reconcile-by-hand"  # nobody starts the workers here
    settings.M2D_SERVE_STARTUP_TIMEOUT = 30
    submission = released(FILES, held=())
    version = model_register(by=submission.owner, submission=submission, paths=["model/"], name="toy-scoring")
    deployment = deployment_scale(by=submission.owner, version=version, min_workers=2)
    with pytest.raises(ScaleInProgress, match="0 of 2 workers ready"):
        deployment_scale(by=submission.owner, version=version, min_workers=1)

    failed = ServeWorker.objects.create(deployment=deployment, state="failed", ended_at=timezone.now())
    deployment_scale(by=submission.owner, version=version, min_workers=3)  # a failed start ended the last one
    with pytest.raises(ScaleInProgress):
        deployment_scale(by=submission.owner, version=version, min_workers=1)
    failed.delete()

    # three workers' startup time and a minute for the message: then nobody is waiting on it any more
    Deployment.objects.filter(pk=deployment.pk).update(updated_at=timezone.now() - timedelta(seconds=3 * 30 + 61))
    deployment_scale(by=submission.owner, version=version, min_workers=1)


def test_set_default_during_a_stream_of_predictions_each_answer_names_the_version_it_used(deployed, settings, api):
    version, deployment, owner = deployed
    second = model_register(by=owner, submission=version.submission, paths=["model2/"], name="toy-scoring")
    deployment_scale(by=owner, version=second, min_workers=1)
    agent.reconcile()
    assert len(ready(second.deployment)) == 1
    caller = api(owner)  # one token: predict and manage
    token = caller._credentials["HTTP_AUTHORIZATION"]
    port = free_port()
    web = start_web(port, web_env(settings))
    answers, stop = [], threading.Event()

    def stream():
        with requests.Session() as http:
            while not stop.is_set():
                asked = time.monotonic()
                answer = http.post(
                    f"http://127.0.0.1:{port}/predictions/toy-scoring",
                    data=png([[10, 30]]),
                    headers={"Authorization": token, "Content-Type": "image/png"},
                    timeout=30,
                )
                answers.append((asked, time.monotonic(), answer))

    streamer = threading.Thread(target=stream)
    streamer.start()
    moves = []
    try:
        for number in (2, 1, 2, 1, 2):
            time.sleep(0.4)
            before = time.monotonic()
            moved = caller.put(f"/api/v1/models/toy-scoring/{number}/set-default")
            assert moved.status_code == 200, moved.content
            moves.append((before, time.monotonic(), number))
        time.sleep(0.4)
    finally:
        stop.set()
        streamer.join()
        os.killpg(web.pid, signal.SIGKILL)
        web.wait(timeout=30)

    assert len(answers) > 10
    assert [a.status_code for _, _, a in answers] == [200] * len(answers), [a.content for _, _, a in answers]
    weights = {"toy-scoring/1": 2.0, "toy-scoring/2": 3.0}
    for _, _, answer in answers:  # the version named is the one whose model answered
        assert answer.json()["score"] == pytest.approx(20.0 * weights[answer.headers["X-M2D-Model-Version"]])
        assert Prediction.objects.get(uuid=answer.headers["X-M2D-Prediction"]).version.number == int(
            answer.headers["X-M2D-Model-Version"].split("/")[1]
        )
    for (_, moved_at, number), following in zip(moves, [*moves[1:], (float("inf"), 0, 0)], strict=True):
        # a request sent after the move came back, and before the next move began, uses the new default
        after = [a for asked, answered, a in answers if asked > moved_at and answered < following[0]]
        assert after and {a.headers["X-M2D-Model-Version"] for a in after} == {f"toy-scoring/{number}"}
    slowest = max(answered - asked for asked, answered, _ in answers)
    print(f"\nset-default ×5 under a stream: {len(answers)} predictions, none failed, slowest {slowest:.2f} s")
    deployment_scale(by=owner, version=second, min_workers=0, max_workers=0)
    agent.reconcile()


def test_a_raw_body_to_a_model_of_several_inputs_gets_400_naming_them(released, api, model_files):
    submission = released(model_files, held=())
    model_register(by=submission.owner, submission=submission, paths=["views/"], name="toy-views")
    caller = api(submission.owner, scopes=["predict"])
    for send in (caller.post, caller.put):  # curl -T sends PUT
        answer = send("/predictions/toy-views", data=png([[1]]), content_type="image/png")
        assert answer.status_code == 400, answer.content
        assert answer.json() == {
            "code": 400,
            "type": "invalid_input",
            "message": "This model takes 4 inputs; send them as multipart parts named LCC, LMLO, RCC, RMLO.",
        }
    audit = Prediction.objects.filter(model_name="toy-views")
    assert [p.status for p in audit] == [400, 400]


def test_kill_9_of_a_worker_s_server_gets_502_and_one_fresh_worker(deployed, api):
    version, deployment, owner = deployed
    caller = api(owner, scopes=["predict"])
    first = ready(deployment)[0]
    top = subprocess.run(
        ["docker", "top", agent.worker_name(first.pk), "-eo", "pid,args"], capture_output=True, text=True, check=True
    )
    processes = [line.split(None, 1) for line in top.stdout.splitlines()[1:]]
    [server] = [int(pid) for pid, command in processes if command.startswith("python3 /opt/m2d/serve/m2d_serve.py")]
    killed_at = time.monotonic()
    os.kill(server, signal.SIGKILL)
    wait_until(lambda: agent.docker_api.serve_worker_state(agent.worker_name(first.pk)).status != "running", 30)
    refused = caller.post(
        "/predictions/toy-scoring", data=npy(np.full((2, 2), 5, np.uint8)), content_type="application/x-npy"
    )
    assert refused.status_code in (502, 503), refused.content  # 502 when asked, 503 once it is known to be gone
    first.refresh_from_db()
    assert first.state == "failed"

    agent.reconcile()
    answer = caller.post(
        "/predictions/toy-scoring", data=npy(np.full((2, 2), 5, np.uint8)), content_type="application/x-npy"
    )
    back = time.monotonic() - killed_at
    assert answer.status_code == 200 and answer.json()["score"] == 10.0
    [second] = ready(deployment)
    assert second.pk != first.pk and containers(deployment) == [agent.worker_name(second.pk)]
    agent.reconcile()  # nothing more to do: still one worker, one container
    assert ready(deployment) == [second] and len(containers(deployment)) == 1
    print(f"\nkill -9 of the model's server: {refused.status_code}, then answered again {back:.1f} s after the kill")


@pytest.fixture
def gunicorn(deployed, settings):
    """The portal as production runs it (gunicorn with platform/app/gunicorn.conf.py), with one
    single-threaded web worker: (its master process, its URL)."""
    port = free_port()
    env = {**web_env(settings), "M2D_WEB_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1", "M2D_WEB_THREADS": "1"}
    master = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "--config", "platform/app/gunicorn.conf.py", "m2d.wsgi"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{url}/v2/health/live"), 60, "gunicorn to answer")
    yield master, url
    os.killpg(master.pid, signal.SIGKILL)
    master.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


def web_workers(master) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()]


def kill_web_worker_mid_prediction(master, url: str, token: str, mode: int) -> float:
    """Ask for a prediction in `mode` and kill -9 the web worker holding it once the model has it;
    returns when the master has a new worker, at the monotonic time of the kill."""
    [holder] = web_workers(master)
    cut = {}

    def in_flight():
        try:
            cut["answer"] = requests.post(
                f"{url}/predictions/toy-scoring",
                data=npy(np.full((2, 2), mode, np.uint8)),
                headers={"Authorization": token, "Content-Type": "application/x-npy"},
                timeout=60,
            )
        except requests.ConnectionError as exc:
            cut["error"] = exc

    asking = threading.Thread(target=in_flight)
    asking.start()
    # in its model's hands: the audit row is written as the request is handed to the worker
    wait_until(lambda: Prediction.objects.filter(status=0).exists(), 30, "the prediction to reach the worker")
    time.sleep(0.5)
    os.kill(holder, signal.SIGKILL)
    killed_at = time.monotonic()
    asking.join()
    assert "error" in cut, cut  # the caller saw its connection end, not an answer
    wait_until(lambda: web_workers(master) not in ([], [holder]), 60, "gunicorn to start another web worker")
    return killed_at


def predict_through(url: str, token: str, value: int):
    return requests.post(
        f"{url}/predictions/toy-scoring",
        data=png([[value]]),
        headers={"Authorization": token, "Content-Type": "image/png"},
        timeout=60,
    )


def test_kill_9_of_the_web_worker_mid_prediction_leaves_the_model_s_worker_serving(deployed, gunicorn, api):
    version, deployment, owner = deployed
    master, url = gunicorn
    [worker] = ready(deployment)
    token = api(owner, scopes=["predict"])._credentials["HTTP_AUTHORIZATION"]
    killed_at = kill_web_worker_mid_prediction(master, url, token, SLOW_MODE)
    for _ in range(100):  # the killed request's prediction holds the worker's one slot for 3 s
        answer = predict_through(url, token, 7)
        if answer.status_code != 503:
            break
    back = time.monotonic() - killed_at
    assert answer.status_code == 200 and answer.json()["score"] == 14.0, answer.content
    agent.reconcile()
    assert ready(deployment) == [worker]  # the model did nothing wrong: the same worker serves
    assert containers(deployment) == [agent.worker_name(worker.pk)]
    print(f"\nkill -9 of the web worker mid-prediction: answered again {back:.1f} s after, by the same worker")


def test_kill_9_of_the_web_worker_during_a_hung_prediction_the_reconciler_recycles_the_worker(
    deployed, gunicorn, api, settings
):
    version, deployment, owner = deployed
    master, url = gunicorn
    [worker] = ready(deployment)
    token = api(owner, scopes=["predict"])._credentials["HTTP_AUTHORIZATION"]
    hung_at = time.monotonic()
    killed_at = kill_web_worker_mid_prediction(master, url, token, 1)  # predict never returns
    agent.reconcile()  # within the response timeout: a busy worker is not recycled
    assert ready(deployment) == [worker]
    # nobody is left to time the prediction out: the worker's one slot stays taken
    busy = predict_through(url, token, 7)
    assert busy.status_code == 503 and busy.json()["type"] == "workers_busy", busy.content

    limit = settings.M2D_SERVE_RESPONSE_TIMEOUT + agent.ORPHANED_PREDICTION_GRACE
    time.sleep(max(0.0, hung_at + limit + 0.5 - time.monotonic()))
    _, took = timed(agent.reconcile)
    worker.refresh_from_db()
    assert worker.state == "failed" and "past the response timeout of 3 s, with nobody waiting" in worker.reason
    [fresh] = ready(deployment)
    assert containers(deployment) == [agent.worker_name(fresh.pk)]
    answer = predict_through(url, token, 7)
    back = time.monotonic() - killed_at
    assert answer.status_code == 200 and answer.json()["score"] == 14.0, answer.content
    print(
        f"\nkill -9 of the web worker during a hung prediction: 503 busy meanwhile; the reconciler replaced the "
        f"worker in {took:.1f} s once the prediction was {limit:g} s old; answered again {back:.1f} s after the kill"
    )


def test_kill_9_of_the_web_worker_mid_prediction_leaves_its_audit_row_which_reads_interrupted(
    deployed, gunicorn, api, settings
):
    version, deployment, owner = deployed
    master, url = gunicorn
    caller = api(owner)  # predict, and read the version's audit
    token = caller._credentials["HTTP_AUTHORIZATION"]
    killed_at = kill_web_worker_mid_prediction(master, url, token, SLOW_MODE)

    def audit() -> list[dict]:
        answer = caller.get("/api/v1/models/toy-scoring/1/predictions")
        assert answer.status_code == 200, answer.content
        return answer.json()["predictions"]

    [cut] = audit()  # written when the request was handed to the worker, before the kill
    assert (cut["status"], cut["state"], cut["inputs"][0]["name"]) == (0, "in flight", "view"), cut
    assert 'code="0"' not in render().decode()  # a request in flight is not counted yet

    limit = settings.M2D_SERVE_RESPONSE_TIMEOUT + serving_selectors.INTERRUPTED_MARGIN_SECONDS
    at = Prediction.objects.get(uuid=cut["id"]).at
    time.sleep(max(0.0, (at - timezone.now()).total_seconds() + limit + 0.5))
    [cut] = audit()
    assert (cut["status"], cut["state"], cut["total_seconds"]) == (0, "interrupted", None), cut
    assert 'm2d_serving_requests_total{code="interrupted",model="toy-scoring",version="1"} 1.0' in render().decode()

    answer = predict_through(url, token, 7)  # the next request is answered and recorded as before
    assert answer.status_code == 200 and answer.json()["score"] == 14.0, answer.content
    after = audit()
    assert [(p["status"], p["state"]) for p in after] == [(200, "answered"), (0, "interrupted")]
    assert after[0]["model_seconds"] is not None and after[0]["total_seconds"] >= after[0]["model_seconds"]
    print(
        f"\nkill -9 of the web worker mid-prediction: its audit row was in flight at once and read interrupted "
        f"{limit:g} s after it was written; answered again {time.monotonic() - killed_at:.1f} s after the kill"
    )


@pytest.fixture
def reconciler_pool(deployed, smtp_server, settings):
    """A real maintenance worker and beat, reconciling every second, on the test's serving folders."""
    overrides = {
        "M2D_RECONCILE_SECONDS": 1,
        "M2D_EXPORT_STORAGE": "local",
        "M2D_EXPORT_ROOT": settings.M2D_EXPORT_ROOT,
        "M2D_MODEL_STORE_ROOT": settings.STORAGES["models"]["OPTIONS"]["location"],
        "M2D_SERVE_DIR": settings.M2D_SERVE_DIR,
        "M2D_SERVE_STARTUP_TIMEOUT": 60,
    }
    pool = WorkerPool(smtp_server.port, prefix="serve-faults-", overrides=overrides, roles=("ops",)).start()
    pool.start_beat()
    pool.use(settings)
    yield pool
    pool.stop()
    settings.M2D_QUEUE_OPS = "serving-tests-reconcile-by-hand"  # the fixture's clean-up reconciles by hand


def test_kill_9_of_the_reconciler_mid_start_adopts_the_starting_worker(deployed, reconciler_pool, api):
    version, deployment, owner = deployed
    slow = model_register(by=owner, submission=version.submission, paths=["slow/"], name="toy-slow")  # loads in 4 s
    slow_deployment = deployment_scale(by=owner, version=slow, min_workers=1)
    try:
        wait_until(lambda: slow_deployment.workers.filter(state="starting").exists(), 60, "a worker to start")
        [starting] = slow_deployment.workers.filter(state="starting")
        wait_until(lambda: agent.docker_api.serve_worker_state(agent.worker_name(starting.pk)).status == "running", 30)
        reconciler_pool.kill("ops")  # while it waits for the model to load
        killed_at = time.monotonic()
        seen = set()

        def adopted():
            seen.add(len(containers(slow_deployment)))
            return len(ready(slow_deployment)) == 1

        reconciler_pool.restart("ops")
        wait_until(adopted, 60, "the worker to be ready")
        back = time.monotonic() - killed_at
        starting.refresh_from_db()
        assert ready(slow_deployment) == [starting], starting.reason  # kept, not started again
        assert seen == {1} and containers(slow_deployment) == [agent.worker_name(starting.pk)]
        assert slow_deployment.workers.count() == 1
        assert ready(deployment) and len(containers(deployment)) == 1  # the other deployment untouched
        answer = api(owner, scopes=["predict"]).post("/predictions/toy-slow", data=png([[1]]), content_type="image/png")
        assert answer.status_code == 200 and answer.json()["score"] == 1.0, answer.content
        time.sleep(2.5)  # two more reconciler periods change nothing
        assert containers(slow_deployment) == [agent.worker_name(starting.pk)] and slow_deployment.workers.count() == 1
        print(f"\nkill -9 of the reconciler mid-start: the starting worker was ready and kept {back:.1f} s later")
    finally:
        deployment_scale(by=owner, version=slow, min_workers=0, max_workers=0)
        wait_until(lambda: not containers(slow_deployment), 60, "the slow worker to stop")
