"""P8: serving. A scikit-learn model (iris, numpy in and out) and the CLaM sample's torch model are
trained as submissions, released, registered and deployed through the platform's own services;
then, on this machine:

- warm latency through the gateway (`/predictions` over HTTP to the portal, nginx and gunicorn in
  front) beside the same request sent straight to the worker's unix socket and the model's
  `predict` alone (the `model_seconds` the server inside the container measures);
- throughput with 1 and with 4 workers, several clients at once;
- cold start, from the container's start to its model answering `/ready`, as the runner records
  it (and from the scale request to ready, which adds the task dispatch);
- beside it, `mlflow models serve --env-manager local` serving the very same released sklearn
  folder (p8_mlflow.py), and TorchServe serving the very same CLaM folder (p8_torchserve.py).
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import threading
import time
import uuid
import zipfile

import numpy as np
import p8_mlflow as mlflow
import p8_torchserve as torchserve
import requests
from common import PORTAL, QUICK, REPO, WORK, Figure, check_succeeded, make_zip, say, submit, wait_finished
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.services import api_token_create
from disclosure.selectors import assessment_waiting
from exports.models import ExportFile
from exports.services import export_decide_all, export_request_release
from modelstore.models import ModelAlias, RegisteredModel
from modelstore.services import model_register
from serving import selectors as serving_selectors
from serving.files import model_folder, socket_path
from serving.models import Deployment, Prediction, ServeWorker
from serving.services import deployment_scale
from serving.views import Predictions
from serving.workerclient import ask

WARM_N = 100 if QUICK else 500
CLAM_N = 20 if QUICK else 100
COLD_REPEATS = 2 if QUICK else 4
TPUT_SECONDS = 5 if QUICK else 15
CLIENTS = 8
OVERHEAD_TARGET_MS = 5.0
IRIS = "bench-iris"
CLAM = "clam-malignancy"

IRIS_MAIN = """
import json, os
import mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

X, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=500).fit(X, y)
folder = "/mnt/export/model"
# MLflow's format (MLmodel, model.pkl) for `mlflow models serve`, and the platform's predict.py
# and card beside it: one folder, one model, both servers.
mlflow.sklearn.save_model(model, folder, serialization_format="pickle",
                          pip_requirements=["scikit-learn", "numpy"])
open(os.path.join(folder, "predict.py"), "w").write(PREDICT)
json.dump(CARD, open(os.path.join(folder, "m2d-model.json"), "w"))
print("accuracy", model.score(X, y))
"""
IRIS_PREDICT = """
import os, pickle
import numpy as np


class Model:
    def load(self, model_dir, device):
        with open(os.path.join(model_dir, "model.pkl"), "rb") as f:
            self.model = pickle.load(f)

    def predict(self, inputs, parameters):
        x = np.asarray(inputs["features"], dtype=float).reshape(-1, 4)
        return {"probabilities": self.model.predict_proba(x).tolist(), "label": self.model.predict(x).tolist()}
"""
IRIS_CARD = {
    "summary": "Iris species from four measurements (the benchmark's numpy/sklearn model).",
    "entrypoint": "predict.py:Model",
    "inputs": [{"name": "features", "formats": ["application/x-npy"], "datatype": "FP64", "max_dims": [1024, 4]}],
    "outputs": [
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
        {"name": "label", "datatype": "INT64", "shape": [-1]},
    ],
    "licence": "CC-BY-4.0",
}
SAMPLE = [[5.1, 3.5, 1.4, 0.2]]


def npy(array) -> bytes:
    out = io.BytesIO()
    np.save(out, np.asarray(array, dtype=np.float64))
    return out.getvalue()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def ms(values: list[float]) -> str:
    return f"p50 {pct(values, 50) * 1000:.1f} / p95 {pct(values, 95) * 1000:.1f} ms (n={len(values)})"


# --- training, release, registration ------------------------------------------------------------


def reviewer(username: str = "bench-admin"):
    User = get_user_model()
    admin = User.objects.filter(username=username).first()
    return admin or User.objects.create_superuser(username, f"{username}@example.org", uuid.uuid4().hex)


def release_and_register(user, run, name: str):
    export = run.export
    if export.entries.filter(state=ExportFile.State.HELD, source=ExportFile.Source.RUN).exists():
        deadline = time.monotonic() + 600
        while assessment_waiting(run.pk) and time.monotonic() < deadline:
            time.sleep(1)  # the disclosure job of the model folder
        export_request_release(by=user, submission=run, justification="The benchmark's model.")
        # A model whose disclosure risk could not be assessed (the benchmark's data set is tiny) takes a
        # second admin's approval.
        for admin in (reviewer(), reviewer("bench-admin-2")):
            export.refresh_from_db()
            held = {e.pk: e.sha256 for e in export.entries.filter(state=ExportFile.State.HELD)}
            if held:
                export_decide_all(by=admin, export=export, decision="release", seen=held, comment="Benchmark.")
    return model_register(by=user, submission=run, paths=["model/"], name=name, visibility="private")


def trained_models(user):
    """The iris and CLaM versions, trained and registered once per bench stack."""
    jobs = []
    if not RegisteredModel.objects.filter(name=IRIS).exists():
        main = f"PREDICT = {IRIS_PREDICT!r}\nCARD = {IRIS_CARD!r}\n"
        zip_path = make_zip(WORK / "p8-iris.zip", main + IRIS_MAIN, "mlflow\nnumpy\nscikit-learn\n")
        jobs.append(submit(user, zip_path))
    if not RegisteredModel.objects.filter(name=CLAM).exists():
        clam = WORK / "clam-dataset.zip"
        sample = REPO / "sample_code" / "clam-dataset"
        with zipfile.ZipFile(clam, "w") as zf:
            for name in ("main.py", "predict.py", "requirements.txt"):
                zf.write(sample / name, name)
        say("P8: training the CLaM sample (a minute or two)")
        call_command(
            "demo_model", sample=clam, researcher=user.username, admin=reviewer().username, workers=0, wait=1800
        )
    if jobs:
        say("P8: training the iris model")
        (run,) = wait_finished([jobs[0].pk], 900)
        check_succeeded([run])
        release_and_register(user, run, IRIS)
    return {name: ModelAlias.objects.get(model__name=name, name="default").version for name in (IRIS, CLAM)}


# --- deployments ---------------------------------------------------------------------------------


def scale(user, version, workers: int, timeout: float = 600) -> tuple[Deployment, float]:
    """Scale and wait until exactly `workers` are live and ready; returns the wall time it took."""
    started, since = time.monotonic(), timezone.now()
    deployment = deployment_scale(by=user, version=version, min_workers=workers)
    deadline = started + timeout
    while time.monotonic() < deadline:
        live = serving_selectors.live_workers(deployment)
        if len(live) == workers and all(w.state == ServeWorker.State.READY for w in live):
            deployment.refresh_from_db()
            return deployment, time.monotonic() - started
        failed = deployment.workers.filter(state=ServeWorker.State.FAILED, started_at__gte=since).first()
        if failed and workers:
            raise RuntimeError(f"a worker of {version} failed to start: {failed.reason[:600]}")
        time.sleep(0.05)
    raise TimeoutError(f"{version} did not reach {workers} ready workers in {timeout:.0f} s")


def cold_starts(user, version, repeats: int) -> tuple[list[float], list[float]]:
    """(container start -> ready as the runner records it, scale request -> ready), per repeat."""
    container, request = [], []
    for _ in range(repeats):
        scale(user, version, 0)
        deployment, took = scale(user, version, 1)
        container.append(deployment.last_cold_start_seconds)
        request.append(took)
    return container, request


# --- asking --------------------------------------------------------------------------------------


class Portal:
    def __init__(self, token: str):
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def predict(self, name: str, files: dict[str, bytes]) -> tuple[float, str]:
        started = time.perf_counter()
        if len(files) == 1:
            (body,) = files.values()
            answer = self.session.post(f"{PORTAL}/predictions/{name}", data=body, timeout=120)
        else:
            answer = self.session.post(f"{PORTAL}/predictions/{name}", files=files, timeout=120)
        took = time.perf_counter() - started
        if answer.status_code == 503:
            raise Busy(answer.text[:300])
        if answer.status_code != 200:
            raise RuntimeError(f"/predictions/{name} answered {answer.status_code}: {answer.text[:300]}")
        return took, answer.headers["X-M2D-Prediction"]


class Busy(Exception):
    """503 with Retry-After: every worker had its M2D_SERVE_IN_FLIGHT predictions; the caller may retry."""


def floor(portal: Portal, n: int) -> list[float]:
    """The portal's least answer behind the same token: GET /v2/health/live (nginx, gunicorn,
    Django, token authentication; no model, no database write)."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        answer = portal.session.get(f"{PORTAL}/v2/health/live", timeout=60)
        times.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise RuntimeError(f"/v2/health/live answered {answer.status_code}")
    return times


def queries_per_prediction(token: str, name: str, body: bytes) -> list[str]:
    """The database queries one /predictions request makes in the gateway, from the bench's own
    process (the same view, the same database, the worker's socket), as their first words."""
    request = RequestFactory().post(
        f"/predictions/{name}", data=body, content_type="application/x-npy", HTTP_AUTHORIZATION=f"Token {token}"
    )
    with CaptureQueriesContext(connection) as captured:
        answer = Predictions.as_view()(request, name=name)
    if answer.status_code != 200:
        raise RuntimeError(f"/predictions/{name} in the bench's process answered {answer.status_code}")
    return [" ".join(q["sql"].split()[:4])[:60] for q in captured.captured_queries]


def warm(portal: Portal, name: str, files: dict[str, bytes], n: int) -> dict[str, list[float]]:
    """n sequential requests through the portal, then n straight to the worker's socket."""
    for _ in range(3):
        portal.predict(name, files)  # connections open, caches warm
    gateway, ids = [], []
    for _ in range(n):
        took, prediction = portal.predict(name, files)
        gateway.append(took)
        ids.append(prediction)
    recorded = list(Prediction.objects.filter(uuid__in=ids).values_list("model_seconds", "total_seconds"))
    model = [m for m, _ in recorded if m is not None]
    inside = [t for _, t in recorded if t is not None]
    (worker,) = serving_selectors.ready_workers(ModelAlias.objects.get(model__name=name, name="default").version)
    kind = "image/png" if len(files) > 1 else "application/x-npy"
    body = {
        "inputs": {k: {"content_type": kind, "data": base64.b64encode(v).decode()} for k, v in files.items()},
        "parameters": {},
    }
    direct = []
    for _ in range(n):
        started = time.perf_counter()
        status, answer = ask(socket_path(worker.pk), settings.M2D_SERVE_UID, "POST", "/predict", body, 120, 1 << 20)
        direct.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"the worker answered {status}: {answer}")
    return {"gateway": gateway, "worker": direct, "model": model, "inside": inside}


def throughput(call, seconds: float, clients: int = CLIENTS) -> tuple[float, int, int]:
    """Answers per second with `clients` threads each calling `call()` in a loop; (rate, errors,
    503 busy refusals)."""
    done, errors, busy = [0] * clients, [0] * clients, [0] * clients
    stop = time.monotonic() + seconds

    def loop(i: int) -> None:
        while time.monotonic() < stop:
            try:
                call()
                done[i] += 1
            except Busy:
                busy[i] += 1
            except Exception:
                errors[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - started), sum(errors), sum(busy)


def rates_text(rates) -> str:
    return " / ".join(
        f"{r:.0f} /s" + (f" ({b} refused busy)" if b else "") + (f" ({e} errors)" if e else "") for r, e, b in rates
    )


# --- P8 ------------------------------------------------------------------------------------------


def p8(user, figures: dict[str, Figure]) -> None:
    add = {
        "P8": ("warm /predictions through the portal, sklearn model: gateway p50 minus model p50", "<= 5 ms"),
        "P8-gw": ("  the same: through the portal (nginx, gunicorn, gateway, socket, server, model)", ""),
        "P8-inside": ("  the same: inside the gateway (resolve, check, pick, socket; total_seconds)", ""),
        "P8-sock": ("  the same: straight to the worker's socket (server + model)", ""),
        "P8-model": ("  the same: the model's predict alone (model_seconds)", ""),
        "P8-floor": ("  the portal's floor: GET /v2/health/live with the same token", ""),
        "P8-queries": ("  the same: database queries per request in the gateway", ""),
        "P8-clam": ("warm /predictions, CLaM torch model, 4 PNG views: portal / model alone", ""),
        "P8-tput": (f"throughput, sklearn model, {CLIENTS} clients: 1 worker / 4 workers", ""),
        "P8-cold-np": ("cold start, sklearn model: container start -> ready", ""),
        "P8-cold-torch": ("cold start, CLaM torch model: container start -> ready", ""),
        "P8-ts": ("TorchServe (pip, Debian's Java), same CLaM folder, 4 PNG parts: warm /predictions", ""),
        "P8-ts-cold": ("  the same: worker start -> ready (scale 0 -> 1, synchronous)", ""),
        "P8-mlflow": ("mlflow models serve --env-manager local, same sklearn folder: warm /invocations", ""),
        "P8-mlflow-tput": (f"  the same: throughput, {CLIENTS} clients: 1 worker / 4 workers", ""),
        "P8-mlflow-cold": ("  the same: container start -> /ping answers (1 worker, 4 workers)", ""),
    }
    for key, (what, target) in add.items():
        figures[key] = Figure(key, what, target)
    versions = trained_models(user)
    iris, clam = versions[IRIS], versions[CLAM]
    token = api_token_create(by=user, scopes=["predict"]).key
    portal = Portal(token)
    iris_files = {"features": npy(SAMPLE)}
    case = {
        view: (REPO / "dataset" / "CLaM-sample" / "S10-A10" / view / "1.png").read_bytes()
        for view in ("LCC", "LMLO", "RCC", "RMLO")
    }

    say("P8: cold starts of the sklearn model")
    cold, requested = cold_starts(user, iris, COLD_REPEATS)
    figures["P8-cold-np"].values = cold
    figures["P8-cold-np"].note = _spread_note("scale request -> ready (adds the task dispatch)", requested)

    say(f"P8: warm latency, sklearn model, {WARM_N} requests each way")
    times = warm(portal, IRIS, iris_files, WARM_N)
    overhead = (pct(times["gateway"], 50) - pct(times["model"], 50)) * 1000
    figures["P8"].values, figures["P8"].unit = [overhead], "ms"
    figures["P8"].met = overhead <= OVERHEAD_TARGET_MS
    for key, series in (("P8-gw", "gateway"), ("P8-inside", "inside"), ("P8-sock", "worker"), ("P8-model", "model")):
        figures[key].text = ms(times[series])
    figures["P8-floor"].text = ms(floor(portal, WARM_N))
    queries = queries_per_prediction(token, IRIS, iris_files["features"])
    figures["P8-queries"].text = str(len(queries))
    figures["P8-queries"].note = "; ".join(queries)
    p50 = {series: pct(values, 50) * 1000 for series, values in times.items()}
    figures["P8"].note = (
        f"at p50 the worker's server adds {p50['worker'] - p50['model']:.1f} ms to the model (JSON, base64, .npy "
        f"decode, output check); the gateway's own work (the version, the card check, the ready workers, the "
        f"audit row in flight) {p50['inside'] - p50['worker']:.1f} ms; the remaining "
        f"{p50['gateway'] - p50['inside']:.1f} ms are HTTP "
        "through nginx and gunicorn, Django, token authentication, the throttle, the audit row's completion and "
        "the answer "
        "(P8-floor is what the portal costs for no work at all)."
    )

    say(f"P8: throughput, {CLIENTS} clients, {TPUT_SECONDS} s, 1 worker then 4")
    rates = {}
    for workers in (1, 4):
        scale(user, iris, workers)
        local = threading.local()

        def call(local=local) -> None:
            if not hasattr(local, "portal"):
                local.portal = Portal(token)
            local.portal.predict(IRIS, iris_files)

        rates[workers] = throughput(call, TPUT_SECONDS)
    figures["P8-tput"].text = rates_text(rates.values())
    figures["P8-tput"].note = (
        f"a worker takes M2D_SERVE_IN_FLIGHT={settings.M2D_SERVE_IN_FLIGHT} prediction(s) at a time and the "
        "gateway refuses the rest with 503 and Retry-After (each refusal an audit row too); "
        "the gateway's own gunicorn (M2D_GATEWAY_WORKERS processes of M2D_GATEWAY_THREADS threads, apart "
        f"from the portal's) holds a thread per request while the worker answers; on {_cpus()} CPUs the "
        "4 workers share the same cores."
    )
    folder = model_folder(iris)
    scale(user, iris, 0)

    say("P8: the CLaM torch model: cold starts, then warm latency")
    cold, requested = cold_starts(user, clam, COLD_REPEATS)
    figures["P8-cold-torch"].values = cold
    figures["P8-cold-torch"].note = _spread_note("scale request -> ready", requested)
    times = warm(portal, CLAM, case, CLAM_N)
    figures["P8-clam"].text = f"{ms(times['gateway'])} / model p50 {pct(times['model'], 50) * 1000:.1f} ms"
    scale(user, clam, 0)

    say("P8: TorchServe on the same CLaM folder")
    try:
        ts = torchserve.figures(model_folder(clam), case, CLAM_N, COLD_REPEATS)
        figures["P8-ts"].text = ms(ts["warm"])
        figures["P8-ts-cold"].values = ts["cold"]
        figures["P8-ts"].note = (
            f"TorchServe {ts['version']} as a process of this machine (its JVM answered /ping {ts['jvm']:.1f} s after "
            "its start), one worker, the platform's predict.py behind a handler of the bench's: no container, no "
            "sandbox, no authentication, no audit."
        )
    except torchserve.NotInstalled as exc:
        figures["P8-ts"].text = "not installed"
        figures["P8-ts"].note = f"TorchServe not measured: {exc}"

    say("P8: mlflow models serve on the same sklearn folder")
    try:
        facts = mlflow.figures(folder, SAMPLE, WARM_N, lambda call: throughput(call, TPUT_SECONDS))
        figures["P8-mlflow"].text = ms(facts["warm"])
        figures["P8-mlflow-tput"].text = rates_text(facts["tput"].values())
        figures["P8-mlflow-cold"].text = " / ".join(f"{c:.2f} s" for c in facts["cold"])
        figures["P8-mlflow"].note = (
            "MLflow's own server (uvicorn) over TCP on loopback, no authentication, no audit, no sandbox: "
            "what the gateway's figures are compared with."
        )
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        figures["P8-mlflow"].note = f"mlflow models serve not measured: {str(exc)[-400:]}"


def _spread_note(what: str, values: list[float]) -> str:
    return f"{what}: " + " / ".join(f"{v:.2f}" for v in values) + " s."


def _cpus() -> int:
    return os.cpu_count() or 1
