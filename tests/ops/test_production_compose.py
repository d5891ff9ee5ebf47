"""The production compose file, brought up here with CPU slots: a researcher's submission goes
through it end to end over HTTPS, Prometheus finds it counted, the logs are JSON with its id, and
a backup survives wiping the host.

One stack for the whole module (it takes minutes to start); every test tears nothing down but the
module fixture, which always does, failures included.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.compose_stack import REPO, ComposeStack, compose_available

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(2400)]

# The model the run exports beside its report: one PNG view in, its mean plus the rows seen out.
PREDICT = """
import os

import numpy as np


class Model:
    def load(self, model_dir, device):
        self.rows = int(open(os.path.join(model_dir, "rows.txt")).read())

    def predict(self, inputs, parameters):
        return {"score": float(np.asarray(inputs["view"]).mean()) + self.rows}
"""
CARD = {
    "summary": "The mean of a view plus the rows the run saw.",
    "entrypoint": "predict.py:Model",
    "inputs": [{"name": "view", "formats": ["image/png"], "datatype": "UINT8", "max_dims": [64, 64]}],
    "outputs": [{"name": "score", "datatype": "FP64", "shape": [1]}],
    "licence": "CC-BY-4.0",
}
MAIN = f"""
import os
from pathlib import Path

import mlflow

rows = Path("/mnt/dataset/clam-details-image.csv").read_text().splitlines()
with mlflow.start_run():
    mlflow.log_param("rows_seen", len(rows) - 1)
    mlflow.log_metric("dataset_rows", len(rows) - 1)
Path("/mnt/export/report.txt").write_text(f"rows: {{len(rows) - 1}}\\n")
model = Path("/mnt/export/model")
model.mkdir()
(model / "rows.txt").write_text(str(len(rows) - 1))
(model / "predict.py").write_text({PREDICT!r})
(model / "m2d-model.json").write_text({json.dumps(CARD)!r})
print("done")
"""
PASSWORD = "Researcher-pass-2026"
FINISHED = ("succeeded", "failed", "cancelled", "timed out")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    reason = compose_available()
    if reason:
        pytest.skip(reason)
    stack = ComposeStack(tmp_path_factory.mktemp("compose"))
    # The synthetic CLaM data set, large enough for a disclosure-risk job to find ten cases on
    # each side of its split (the repository's sample has ten cases in all). Its images at half
    # the default size (a quarter of the time to make): the tests count its rows, and the model
    # the disclosure job scores reads a view's brightness.
    stack.dataset_dir = stack.workdir / "dataset"
    generate = [sys.executable, str(REPO / "dataset" / "generate.py"), "--cases", "60", "--size", "128x104"]
    generate += ["--out", str(stack.dataset_dir)]
    subprocess.run(generate, check=True, capture_output=True, timeout=600)
    stack.env["M2D_DATASET_DIR"] = str(stack.dataset_dir)
    stack.prepare()
    try:
        stack.build_seconds = stack.build()
        stack.up_seconds = stack.up()
        print(f"\nplatform images built in {stack.build_seconds:.0f} s; stack ready in {stack.up_seconds:.0f} s")
        yield stack
    finally:
        stack.down()


class Researcher:
    """A browser session on the portal, over HTTPS, trusting only the proxy's certificate."""

    def __init__(self, stack: ComposeStack, username: str):
        self.stack, self.username = stack, username
        self.session = requests.Session()

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        headers = {"Referer": f"{self.stack.url}{path}", **kwargs.pop("headers", {})}
        return self.session.request(
            method, f"{self.stack.url}{path}", verify=str(self.stack.cert), headers=headers, **kwargs
        )

    @staticmethod
    def csrf(html: str) -> str:
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)

    def log_in(self) -> None:
        page = self.request("GET", "/accounts/login/")
        form = {"csrfmiddlewaretoken": self.csrf(page.text), "password": PASSWORD}
        form["login"] = form["username"] = self.username  # whichever the login form names it
        response = self.request("POST", "/accounts/login/", data=form)
        assert response.status_code == 200 and "/accounts/login/" not in response.url, response.text[:2000]

    def submit(self, files: dict[str, str]) -> int:
        page = self.request("GET", "/submissions/new/")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in files.items():
                archive.writestr(name, content)
        response = self.request(
            "POST",
            "/submissions/new/",
            data={"csrfmiddlewaretoken": self.csrf(page.text)},
            files={"archive": ("submission.zip", buffer.getvalue(), "application/zip")},
            allow_redirects=False,
        )
        assert response.status_code == 302, response.text[:3000]
        return int(response.headers["Location"].rstrip("/").split("/")[-1])

    def detail(self, submission_id: int) -> tuple[str, str]:
        page = self.request("GET", f"/submissions/{submission_id}/").text
        match = re.search(r'id="status">([^<]+)<', page)
        return (match.group(1).strip().lower() if match else ""), page

    def wait_finished(self, submission_id: int, timeout: float = 600) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, page = self.detail(submission_id)
            if status in FINISHED:
                return status, page
            time.sleep(2)
        raise AssertionError(f"submission {submission_id} still {status!r} after {timeout} s\n{self.stack.logs()}")


def scrape(stack: ComposeStack, **auth) -> dict[tuple[str, tuple], float]:
    headers = auth or {"Authorization": f"Bearer {stack.metrics_token}"}
    response = requests.get(f"{stack.url}/metrics", headers=headers, verify=str(stack.cert), timeout=30)
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


@pytest.fixture(scope="module")
def finished_submission(stack):
    created = json.loads(
        stack.manage("create_researcher", "ada", "--email", "ada@example.org", "--password", PASSWORD, "--approve")
    )
    researcher = Researcher(stack, "ada")
    researcher.log_in()
    started = time.monotonic()
    submission_id = researcher.submit({"main.py": MAIN, "requirements.txt": "mlflow==3.17.2\n"})
    status, page = researcher.wait_finished(submission_id)
    print(f"\nsubmission {submission_id} {status} in {time.monotonic() - started:.0f} s")
    return {"id": submission_id, "status": status, "page": page, "mlflow": created, "researcher": researcher}


def test_a_submission_goes_through_end_to_end_over_https(stack, finished_submission):
    assert finished_submission["status"] == "succeeded", finished_submission["page"][-4000:] + stack.logs()
    page = finished_submission["page"]
    assert "dataset_rows" in page and "kept for review" in page and "report.txt" not in page
    # The export sits in the host's data folder, where backups take it from.
    rows = len((stack.dataset_dir / "clam-details-image.csv").read_text().splitlines()) - 1
    exported = stack.data_dir / "exports" / str(finished_submission["id"]) / "report.txt"
    assert exported.read_text() == f"rows: {rows}\n"
    # The "finished" e-mail was written (no SMTP server configured: the mail folder), by the ops
    # worker's outbox round, which may come a little after the submission's page says it finished.
    subject = f"Submission {finished_submission['id']}: execution finished"
    deadline = time.monotonic() + 90
    while True:
        mails = [m.read_text(errors="replace") for m in (stack.data_dir / "mail").glob("*.log")]
        if any(subject in m for m in mails) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert any(subject in m for m in mails), stack.logs("ops-worker", tail=100)


def test_prometheus_finds_the_submission_counted(stack, finished_submission):
    assert requests.get(f"{stack.url}/metrics", verify=str(stack.cert), timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert requests.get(f"{stack.url}/metrics", headers=wrong, verify=str(stack.cert), timeout=30).status_code == 401
    basic = "Basic " + base64.b64encode(f"prometheus:{stack.metrics_token}".encode()).decode()

    m = scrape(stack, Authorization=basic)

    assert m[("m2d_submissions", (("status", "succeeded"),))] == 1
    assert m[("m2d_submissions_received_total", ())] == 1
    runs = {dict(labels)["slot"]: v for (name, labels), v in m.items() if name == "m2d_runs_total"}
    busy = {dict(labels)["slot"]: v for (name, labels), v in m.items() if name == "m2d_slot_busy"}
    assert list(runs.values()) == [1] and next(iter(runs)).startswith("test-host/"), runs
    assert busy == dict.fromkeys(runs, 0)
    assert m[("m2d_build_duration_seconds_count", ())] == 1
    assert m[("m2d_run_duration_seconds_count", ())] == 1
    assert m[("m2d_queue_wait_seconds_count", ())] == 1
    assert m[("m2d_queue_length", ())] == 0
    assert m[("m2d_tracking_gateway_bytes_total", ())] > 0
    assert m[("m2d_submission_failures_total", (("stage", "run"), ("status", "failed")))] == 0
    assert m[("m2d_email_failures_total", ())] == 0
    assert m[("m2d_broker_up", ())] == 1


def test_worker_logs_are_json_with_the_submission_id(stack, finished_submission):
    submission_id = finished_submission["id"]
    for service in ("build-worker", "run-worker"):
        lines = []
        for line in stack.logs(service, tail=2000).splitlines():
            _, _, payload = line.partition("| ")
            if payload.startswith("{"):
                lines.append(json.loads(payload))
        assert lines, f"no JSON lines from {service}"
        about = [entry for entry in lines if entry.get("submission_id") == submission_id]
        assert about, f"no line of {service} names submission {submission_id}"
        assert all(entry["service"] == service for entry in about)


def test_health_endpoints_and_deploy_checks_in_the_running_stack(stack):
    body = stack.wait_ready(timeout=60)
    assert set(body["checks"]) == {"database", "redis", "docker", "mlflow", "storage"}
    assert "workers report their engines up" in body["checks"]["docker"]["detail"]
    # Without the token, the internet learns only whether the portal is ready.
    anonymous = requests.get(f"{stack.url}/readyz", verify=str(stack.cert), timeout=20)
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
    assert requests.get(f"{stack.url}/healthz", verify=str(stack.cert), timeout=10).text == "ok\n"
    # Plain HTTP is sent to HTTPS.
    redirect = requests.get(f"http://localhost:{stack.http_port}/submissions/", allow_redirects=False, timeout=10)
    assert redirect.status_code == 301 and redirect.headers["Location"].startswith(stack.url)
    # The portal's production settings pass Django's deployment checks.
    report = stack.manage("check", "--deploy", "--fail-level", "WARNING")
    assert "no issues" in report
    # MLflow answers behind its own TLS port, and refuses artifact uploads at the door.
    assert requests.get(f"{stack.mlflow_url}/health", verify=str(stack.cert), timeout=10).status_code == 200
    upload = requests.post(
        f"{stack.mlflow_url}/ajax-api/2.0/mlflow/upload-artifact?run_uuid=x&path=a.txt",
        data=b"x",
        verify=str(stack.cert),
        timeout=10,
    )
    assert upload.status_code == 403


def test_only_the_mlflow_admin_looks_up_mlflow_users(stack, finished_submission):
    creds = finished_submission["mlflow"]
    researcher = (creds["mlflow_username"], creds["mlflow_password"])
    admin = ("m2d-admin", stack.env["MLFLOW_ADMIN_PASSWORD"])

    def get(path: str, auth: tuple[str, str]) -> requests.Response:
        prepared = requests.Request("GET", stack.mlflow_url, auth=auth).prepare()
        prepared.url = f"{stack.mlflow_url}{path}"  # as written: requests would decode %67 to g
        with requests.Session() as session:
            return session.send(prepared, verify=str(stack.cert), timeout=10)

    lookups = [
        "/api/2.0/mlflow/users/list",
        "/ajax-api/2.0/mlflow/users/list",
        "//api/2.0/mlflow//users/list",
        "/api/3.0/mlflow/roles/users/list?role_id=1",
        "/api/2.0/mlflow/users/get?username={name}",
        "/ajax-api/2.0/mlflow/users/get?username={name}",
        "/api/2.0/mlflow/users/%67et?username={name}",
        "/api/2.0/mlflow%2Fusers%2Fget?username={name}",
        "/API/2.0/MLflow/Users/Get?username={name}",
        "/api/3.0/mlflow/users/permissions/list?username={name}",
        "/ajax-api/3.0/mlflow/users/roles/list?username={name}",
    ]
    for path in lookups:
        # The same refusal for a name that exists, one that does not, and the researcher's own.
        responses = [get(path.format(name=name), researcher) for name in ("m2d-admin", "nobody-here", researcher[0])]
        answers = {(r.status_code, r.text) for r in responses}
        assert len(answers) == 1, (path, answers)
        status, text = answers.pop()
        assert status == 403 and "Only the MLflow admin may look up" in text, (path, text)
    # Researchers still read their own login; the admin looks anyone up.
    assert get("/ajax-api/2.0/mlflow/users/current", researcher).json()["user"]["username"] == researcher[0]
    listed = get("/api/2.0/mlflow/users/list", admin)
    assert listed.status_code == 200
    assert researcher[0] in {user["username"] for user in listed.json()["users"]}
    assert get(f"/api/2.0/mlflow/users/get?username={researcher[0]}", admin).status_code == 200
    assert get("/api/2.0/mlflow/users/get?username=nobody-here", admin).status_code == 404


RELEASE = """
from accounts.services import api_token_create, staff_create
from exports.models import ExportFile
from exports.services import export_decide_all, export_request_release
from submissions.models import Submission

run = Submission.objects.get(pk={submission})
export_request_release(by=run.owner, submission=run, justification="The trained model, for the store.")
# A second admin releases what the first one's decision leaves waiting for a second look.
for email, name in (("grace@example.org", "Grace Hopper"), ("alan@example.org", "Alan Turing")):
    admin, _ = staff_create(email=email, full_name=name)
    held = run.export.entries.filter(state=ExportFile.State.HELD)
    if held:
        seen = {{e.pk: e.sha256 for e in held}}
        reason = "A toy scorer of pixel means; it holds no case data."
        export_decide_all(by=admin, export=run.export, decision="release", seen=seen, comment=reason)
print(api_token_create(by=run.owner).key)
"""


class TokenClient:
    """Calls with the researcher's API token, trusting only the proxy's certificate."""

    def __init__(self, stack: ComposeStack, token: str):
        self.stack, self.token = stack, token

    def __getattr__(self, method: str):
        def call(url: str, **kwargs) -> requests.Response:
            headers = {"Authorization": f"Token {self.token}", **kwargs.pop("headers", {})}
            return requests.request(method.upper(), url, headers=headers, verify=str(self.stack.cert), **kwargs)

        return call


def host_mounts_under(folder) -> list[str]:
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(f"{folder}/")]


def test_a_released_model_is_served_through_the_proxy(stack, finished_submission):
    """Registered and scaled over the API, its worker started by the ops worker as a sealed
    container, asked over HTTPS the seed's way and the V2 way, then scaled to nothing."""
    submission_id = finished_submission["id"]
    token = stack.manage("shell", "-c", RELEASE.format(submission=submission_id)).split()[-1]
    api = TokenClient(stack, token)

    registered = api.post(
        f"{stack.url}/api/v1/models",
        json={"name": "clam-rows", "source": {"submission": submission_id, "paths": ["model/"]}},
        timeout=60,
    )
    assert registered.status_code == 201, registered.text
    version = f"{stack.url}/api/v1/models/clam-rows/1"
    started = time.monotonic()
    scaled = api.put(f"{version}?min_worker=1&synchronous=true&timeout=240", timeout=300)
    assert scaled.status_code == 200, f"{scaled.text}\n{stack.logs('ops-worker', tail=200)}"
    print(f"\nfirst worker ready through the API in {time.monotonic() - started:.1f} s")

    # The worker: the submission's image, no network, labelled as this platform's; its socket
    # folder is a tmpfs the ops worker mounted, which the host (and so the engine) sees.
    labelled = stack_serving_containers(stack)
    assert len(labelled) == 1, labelled
    facts = json.loads(subprocess.run(["docker", "inspect", labelled[0]], capture_output=True, text=True).stdout)[0]
    assert facts["HostConfig"]["NetworkMode"] == "none"
    assert not any("docker.sock" in m["Source"] for m in facts["Mounts"])
    serve_dir = stack.data_dir / "serve"
    assert len(host_mounts_under(serve_dir / "w")) == 1

    rows = len((stack.dataset_dir / "clam-details-image.csv").read_text().splitlines()) - 1
    view = io.BytesIO()
    Image.fromarray(np.full((8, 8), 10, np.uint8)).save(view, format="PNG")
    email = "ada@example.org"
    # curl --user ada@example.org:TOKEN https://.../predictions/clam-rows -T view.png
    answer = requests.put(
        f"{stack.url}/predictions/clam-rows",
        data=view.getvalue(),
        auth=(email, token),
        verify=str(stack.cert),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"score": 10.0 + rows}
    assert answer.headers["X-M2D-Model-Version"] == "clam-rows/1"
    v2 = api.post(
        f"{stack.url}/v2/models/clam-rows/infer",
        json={
            "inputs": [
                {
                    "name": "view",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": [base64.b64encode(view.getvalue()).decode()],
                    "parameters": {"content_type": "image/png"},
                }
            ]
        },
        timeout=60,
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"] == [{"name": "score", "datatype": "FP64", "shape": [1], "data": [10.0 + rows]}]
    timings = []
    for _ in range(20):
        began = time.monotonic()
        assert api.put(f"{stack.url}/predictions/clam-rows", data=view.getvalue(), timeout=60).status_code == 200
        timings.append(time.monotonic() - began)
    timings.sort()
    p50, slowest = timings[10] * 1000, timings[-1] * 1000
    print(f"warm predictions over HTTPS through the proxy: p50 {p50:.1f} ms, slowest {slowest:.1f} ms")
    counted = scrape(stack)
    assert counted[("m2d_serving_requests_total", (("code", "200"), ("model", "clam-rows"), ("version", "1")))] == 22

    # Scaled to nothing: the container and its socket folder go.
    assert api.put(f"{version}?min_worker=0&synchronous=true", timeout=120).status_code == 200
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (host_mounts_under(serve_dir / "w") or stack_serving_containers(stack)):
        time.sleep(2)
    assert not stack_serving_containers(stack) and not host_mounts_under(serve_dir / "w")
    refused = api.put(f"{stack.url}/predictions/clam-rows", data=view.getvalue(), timeout=60)
    assert refused.status_code == 503 and refused.headers["Retry-After"]


def stack_serving_containers(stack) -> list[str]:
    filters = ["--filter", f"label=org.m2d.instance={stack.instance}", "--filter", "label=org.m2d.role=serve"]
    return subprocess.run(["docker", "ps", "-aq", *filters], capture_output=True, text=True).stdout.split()


def test_a_backup_brings_everything_back_after_the_host_is_wiped(stack, finished_submission):
    submission_id = finished_submission["id"]
    exported = stack.data_dir / "exports" / str(submission_id) / "report.txt"
    content = exported.read_bytes()
    # The model store's files (the served model's, registered above).
    models = stack.data_dir / "models"
    stored = {p.relative_to(models): p.read_bytes() for p in models.rglob("*") if p.is_file()}
    backup = stack.script("backup.sh", str(stack.workdir / "backups")).strip().splitlines()[-1]

    # Lose everything: containers, the database volume, the data folder.
    stack.compose("down", "-v", timeout=300)
    for folder in ("media", "exports", "logs", "mail", "models"):
        assert (stack.data_dir / folder).exists()
        shutil.rmtree(stack.data_dir / folder)
    stack.compose("up", "-d", "postgres")
    tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    for _ in range(60):
        psql = ("exec", "-T", "-u", "postgres", "postgres", "psql", "-At", "-d", "m2d", "-c", tables)
        empty = stack.compose(*psql, check=False)
        if empty.returncode == 0:
            break
        time.sleep(1)
    assert empty.stdout.strip() == "0", "the wiped host still has the portal's tables"

    stack.script("restore.sh", backup)
    stack.wait_ready()

    assert exported.read_bytes() == content
    assert stored and {p.relative_to(models): p.read_bytes() for p in models.rglob("*") if p.is_file()} == stored
    researcher = Researcher(stack, "ada")
    researcher.log_in()
    status, page = researcher.detail(submission_id)
    assert status == "succeeded" and "dataset_rows" in page
    # MLflow's runs and users are back too: the researcher's own credentials read the run.
    creds = finished_submission["mlflow"]
    runs = requests.post(
        f"{stack.mlflow_url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [creds["mlflow_experiment_id"]]},
        auth=(creds["mlflow_username"], creds["mlflow_password"]),
        verify=str(stack.cert),
        timeout=30,
    )
    assert runs.status_code == 200, runs.text
    metrics = {m["key"]: m["value"] for m in runs.json()["runs"][0]["data"]["metrics"]}
    rows = len((stack.dataset_dir / "clam-details-image.csv").read_text().splitlines()) - 1
    assert metrics["dataset_rows"] == rows
    assert scrape(stack)[("m2d_submissions", (("status", "succeeded"),))] == 1


# A model that keeps nothing of any case: the brightness of the left CC view, as a probability.
SMOOTH_PREDICT = """
import numpy as np


class Model:
    def load(self, model_dir, device):
        pass

    def predict(self, inputs, parameters):
        view = np.asarray(inputs["LCC"], dtype=float)
        return {"malignant": float(view.mean() / max(view.max(), 1.0))}
"""
SMOOTH_CARD = {
    "summary": "The brightness of the left CC view.",
    "entrypoint": "predict.py:Model",
    "inputs": [{"name": "LCC", "formats": ["image/png"], "datatype": "UINT8"}],
    "outputs": [{"name": "malignant", "datatype": "FP64", "shape": [1]}],
    "licence": "CC-BY-4.0",
}
SMOOTH_MAIN = f"""
import json
from pathlib import Path

model = Path("/mnt/export/model")
model.mkdir()
(model / "predict.py").write_text({SMOOTH_PREDICT!r})
(model / "m2d-model.json").write_text({json.dumps(SMOOTH_CARD)!r})
print("exported")
"""
REPORTS = """
import json
from disclosure.models import DisclosureReport

fields = ("kind", "path", "verdict", "summary", "attacks", "n_train", "n_test", "problem", "fault", "seconds")
reports = DisclosureReport.objects.filter(submission_id={submission})
print(json.dumps([{{name: getattr(r, name) for name in fields}} for r in reports]))
"""


def test_a_runs_exported_model_gets_its_disclosure_report(stack, finished_submission):
    """The run worker asks the host's engine for the job's containers: the model scored in the
    submission's image on the data set's cases, SACRO-ML's attack in the disclosure image."""
    researcher = finished_submission["researcher"]
    submission_id = researcher.submit({"main.py": SMOOTH_MAIN, "requirements.txt": "mlflow==3.17.2\n"})
    status, page = researcher.wait_finished(submission_id)
    assert status == "succeeded", page[-3000:] + stack.logs("run-worker", tail=100)

    deadline = time.monotonic() + 600
    while True:
        printed = stack.manage("shell", "-c", REPORTS.format(submission=submission_id))
        reports = json.loads(printed.strip().splitlines()[-1])
        if (reports and all(r["verdict"] != "pending" for r in reports)) or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert len(reports) == 1, f"{reports}\n{stack.logs('run-worker', tail=200)}"
    report = reports[0]
    assert report["kind"] == "model" and report["path"] == "model/", report
    assert report["fault"] == "" and report["problem"] == "", f"{report}\n{stack.logs('run-worker', tail=200)}"
    rows = (stack.dataset_dir / "clam-details-case-extrainfo.csv").read_text().splitlines()[1:]
    held_out = sum(1 for row in rows if row.split(";")[-1] != "train")
    assert (report["n_train"], report["n_test"]) == (len(rows) - held_out, held_out)
    attack = report["attacks"][0]
    assert report["verdict"] == "clear", report
    assert "no evidence of disclosure" in report["summary"], report
    print(
        f"\ndisclosure report in the production stack: AUC {attack['auc']:.3f} "
        f"[{attack['auc_low']:.3f}, {attack['auc_high']:.3f}], {report['n_train']} + {report['n_test']} cases, "
        f"{report['seconds']:.1f} s"
    )
    # The job's folders and its output tmpfs are gone from the host.
    assert not host_mounts_under(stack.data_dir / "disclosure")
    assert not any((stack.data_dir / "disclosure").iterdir())
