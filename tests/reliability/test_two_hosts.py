"""Two run hosts, each with its own Docker engine: host A (the first engine, beside the central
services) and host B (a second engine on its own socket and data root, scripts/second-engine.sh),
with its own slots, data set folder and data folders. They share only what separate machines
would: the database, the broker, MLflow, the package index and the S3 export storage."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import boto3
import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from exports.models import Export, ExportFile, Provenance
from hosts.models import Host
from submissions.models import Submission
from tests.conftest import WorkerPool, free_port
from tests.helpers import mlflow_runs, sign_in_with_second_factor, upload, wait_finished
from tests.integration.exports.conftest import seen_on_page
from tests.integration.exports.test_release_flow import fetch
from tests.package_index import HeldIndex, unheld_requirement
from tests.reliability.conftest import Engine
from tests.reliability.test_crashes import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.services, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

S3_KEYS = {"M2D_EXPORT_S3_ACCESS_KEY_ID": "m2d-test-key", "M2D_EXPORT_S3_SECRET_ACCESS_KEY": "m2d-test-secret"}
COMMON = {
    "M2D_HEARTBEAT_SECONDS": 2,
    "M2D_RECONCILE_SECONDS": 3,
    "M2D_STOP_GRACE_SECONDS": 3,
    "M2D_MAX_RUNNING_PER_RESEARCHER": 0,
    "M2D_ENGINE_RESTART_WAIT_SECONDS": 5,
    "M2D_RUN_LOST_SECONDS": 20,
}
# One requirement for every submission of the module: each host builds its layer once, through
# its own door to the package index.
REQUIREMENT = unheld_requirement()

WORK = """
import socket
import time
from pathlib import Path

import mlflow

marker = Path("/mnt/dataset/host.txt")
print("data set of", marker.read_text().strip() if marker.exists() else "host A", flush=True)
try:
    Path("/mnt/dataset/written.txt").write_text("x")
    print("the data set is writable", flush=True)
except OSError:
    print("the data set is read-only", flush=True)
try:
    socket.create_connection(("127.0.0.1", {mlflow_port}), timeout=3).close()
    print("MLflow reached directly", flush=True)
except OSError:
    print("MLflow only through the gateway", flush=True)
mlflow.set_experiment(__import__("os").environ["MLFLOW_EXPERIMENT_NAME"])
with mlflow.start_run():
    mlflow.log_metric("n", {n})
    for second in range({seconds}):
        print(f"working {{second}}", flush=True)
        time.sleep(1)
    mlflow.log_metric("finished", 1)
Path("/mnt/export/result.txt").write_text("result {n}")
print("finished", flush=True)
"""


def work(n: int, seconds: int = 8) -> str:
    port = django_settings.MLFLOW_URL.rsplit(":", 1)[1].split("/")[0]
    return WORK.format(n=n, seconds=seconds, mlflow_port=port)


@pytest.fixture(scope="module")
def s3_bucket():
    """A real S3 API server (moto) on the loopback and a private bucket: the only store of
    exports both hosts reach."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    bucket = f"m2d-two-hosts-{os.getpid()}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    yield {
        "M2D_EXPORT_STORAGE": "s3",
        "M2D_EXPORT_S3_BUCKET": bucket,
        "M2D_EXPORT_S3_ENDPOINT_URL": endpoint,
        "M2D_EXPORT_S3_REGION": "us-east-1",
        **S3_KEYS,
    }
    server.stop()


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEYS["M2D_EXPORT_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_KEYS["M2D_EXPORT_S3_SECRET_ACCESS_KEY"],
    )


def s3_object(storage: dict, key: str) -> bytes:
    client = s3_client(storage["M2D_EXPORT_S3_ENDPOINT_URL"])
    return client.get_object(Bucket=storage["M2D_EXPORT_S3_BUCKET"], Key=f"exports/{key}")["Body"].read()


class Hosts:
    """Host A: build, run, ops workers and beat on the first engine. Host B: a run worker on the
    second engine, with a var folder (logs, exports, gateway, export volumes) and a data set
    folder of its own; it reads the uploaded zips from the portal's media folder, as a run host
    mounts them."""

    def __init__(self, smtp_port: int, engine: Engine, storage: dict, var_b: Path):
        self.engine, self.storage, self.var_b, self.smtp_port = engine, storage, var_b, smtp_port
        self.dataset_b = var_b / "dataset"
        shutil.copytree(django_settings.M2D_DATASET_DIR, self.dataset_b, dirs_exist_ok=True)
        (self.dataset_b / "host.txt").write_text("host B\n")
        self.a = WorkerPool(smtp_port, prefix="twohosts-", overrides={**COMMON, **storage, "M2D_HOST_NAME": "alpha"})
        self.b_overrides = {
            **COMMON,
            **storage,
            "M2D_HOST_NAME": "beta",
            "DOCKER_HOST": engine.url,
            "M2D_VAR_DIR": var_b,
            "M2D_MEDIA_ROOT": django_settings.MEDIA_ROOT,
            "M2D_DATASET_DIR": self.dataset_b,
        }
        self.b = WorkerPool(smtp_port, prefix="twohosts-", overrides=self.b_overrides, roles=("run",))

    def start(self, settings) -> Hosts:
        self.a.start()
        self.a.start_beat()
        self.b.start()
        self.a.use(settings)  # the portal is on host A
        settings.STORAGES = {
            **django_settings.STORAGES,
            "exports": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": self.storage["M2D_EXPORT_S3_BUCKET"],
                    "location": "exports",
                    "endpoint_url": self.storage["M2D_EXPORT_S3_ENDPOINT_URL"],
                    "region_name": "us-east-1",
                    "access_key": S3_KEYS["M2D_EXPORT_S3_ACCESS_KEY_ID"],
                    "secret_key": S3_KEYS["M2D_EXPORT_S3_SECRET_ACCESS_KEY"],
                    "default_acl": None,
                    "file_overwrite": True,
                    "signature_version": "s3v4",
                },
            },
        }
        return self

    def restart_b(self, **overrides) -> None:
        """Host B's run worker again, with other settings."""
        self.b.stop()
        self.b_overrides = {**self.b_overrides, **overrides}
        self.b = WorkerPool(self.smtp_port, prefix="twohosts-", overrides=self.b_overrides, roles=("run",)).start()

    def run_log_on_b(self, sid: int) -> bytes:
        path = self.var_b / "logs" / str(sid) / "run.log"
        return path.read_bytes() if path.exists() else b""

    def containers_on_b(self, sid: int) -> list[str]:
        return self.engine.docker("ps", "-aq", "--filter", f"label=org.m2d.submission={sid}").split()

    def stop(self) -> None:
        self.b.stop()
        self.a.stop()


@pytest.fixture
def hosts(django_db_setup, smtp_server, settings, mailbox, engine_b, s3_bucket, tmp_path_factory):
    var_b = Path(django_settings.VAR_DIR) / f"host-b-{time.monotonic_ns()}"
    var_b.mkdir(parents=True)
    pair = Hosts(smtp_server.port, engine_b, s3_bucket, var_b).start(settings)
    yield pair
    pair.stop()
    # Export volumes a cut-short run left mounted under host B's folders.
    for line in Path("/proc/mounts").read_text().splitlines():
        target = line.split()[1]
        if target.startswith(f"{var_b}/"):
            subprocess.run(["umount", "-l", target], check=False)


def events(sid: int) -> list[str]:
    return [e.to_status for e in Submission.objects.get(pk=sid).events.order_by("at", "id")]


def test_runs_land_on_both_hosts_and_hand_back_through_shared_services(client, hosts, make_researcher):
    started = time.monotonic()
    researchers = [make_researcher(f"two{i}") for i in range(2)]
    ids = [
        upload(client, researchers[n % 2].user, {"main.py": work(n), "requirements.txt": REQUIREMENT}) for n in range(4)
    ]
    done = [wait_finished(sid, timeout=420) for sid in ids]
    assert [s.status for s in done] == ["succeeded"] * 4, [(s.status, s.reason) for s in done]
    assert {s.slot for s in done} == {"alpha/cpu0", "beta/cpu0"}

    for n, submission in enumerate(done):
        on_b = submission.slot == "beta/cpu0"
        tail = submission.run_log_tail
        # its own host's data set folder, read-only; MLflow only through its own host's gateway
        assert ("data set of host B" in tail) == on_b, tail
        assert "the data set is read-only" in tail and "MLflow only through the gateway" in tail, tail
        assert "finished" in tail
        assert submission.metrics == {"n": float(n), "finished": 1.0}
        assert submission.tracking_calls > 0
        # the export went from the host that ran it to the shared S3 storage, and nowhere else
        assert [f["path"] for f in submission.export.files] == ["result.txt"]
        assert s3_object(hosts.storage, f"{submission.pk}/result.txt") == f"result {n}".encode()
        # provenance: what the build on A described, and the run's own host's data set
        record = Provenance.objects.get(submission=submission)
        assert record.image and record.dataset_fingerprint, record.problems
        assert record.problems == []
        assert events(submission.pk).count("running") == 1

    on_b = [s for s in done if s.slot == "beta/cpu0"]
    builds_on_b = []
    for submission in on_b:
        logs_b = hosts.var_b / "logs" / str(submission.pk)
        # built again on B's own engine from the stored zip (its requirements layer once, then cached)
        # (the installer's colours split its lines at random places: read without them)
        builds_on_b.append(re.sub(r"\x1b\[[0-9;]*m", "", (logs_b / "build-on-run-host.log").read_text()))
        assert "Successfully tagged" in builds_on_b[-1]
        assert (logs_b / "run.log").exists()
        assert not (Path(django_settings.VAR_DIR) / "logs" / str(submission.pk) / "run.log").exists()
        # nothing stays on B's host: the export left for S3, the image and containers are gone
        assert not (hosts.var_b / "exports" / str(submission.pk)).exists()
    # the first build on B asked the package index, through B's own door
    assert "+ sympy==1.13.3" in builds_on_b[0], builds_on_b[0]
    fingerprints = {Provenance.objects.get(submission=s).dataset_fingerprint for s in done}
    assert len(fingerprints) == 2  # each host recorded the data set it has
    for submission in on_b:
        left = f"label=org.m2d.submission={submission.pk}"
        wait_until(lambda f=left: not hosts.engine.docker("ps", "-aq", "--filter", f).strip(), 60, "B's containers")
        wait_until(lambda f=left: not hosts.engine.docker("images", "-q", "--filter", f).strip(), 60, "B's images")
    for researcher in researchers:
        assert len(mlflow_runs(researcher)) == 2
    print(f"four runs on two hosts took {time.monotonic() - started:.0f} s")


def test_full_log_of_a_run_on_b_reaches_its_researcher_through_the_review(client, hosts, make_researcher, settings):
    from django.contrib.auth import get_user_model

    started = time.monotonic()
    settings.M2D_LOG_TAIL_LINES = 5
    hosts.restart_b(M2D_LOG_TAIL_LINES=5)  # the tail is cut where the run runs
    researcher = make_researcher("fulllog")
    sid = run_on_b(client, hosts, researcher, seconds=8)
    submission = wait_finished(sid, timeout=300)
    assert (submission.status, submission.slot) == ("succeeded", "beta/cpu0"), submission.reason
    whole = hosts.run_log_on_b(sid)
    assert b"data set of host B" in whole and "data set of host B" not in submission.run_log_tail
    assert not (Path(django_settings.VAR_DIR) / "logs" / str(sid) / "run.log").exists()  # not on the portal's host

    # The researcher sees the tail, and asks for the whole log ...
    client.force_login(researcher.user)
    page = client.get(reverse("submissions:detail", args=[sid])).content.decode()
    assert "data set of host B" not in page and 'name="log-run"' in page
    asked = {"justification": "The whole log, to see which data set the run read.", "log-run": "1"}
    assert client.post(reverse("exports:request", args=[sid]), asked).status_code == 302
    export = Export.objects.get(submission_id=sid)
    log_file = export.entries.get(source=ExportFile.Source.LOG)
    assert (log_file.state, log_file.size) == ("held", len(whole))
    page = client.get(reverse("submissions:detail", args=[sid])).content.decode()
    assert "/exports/download/" not in page  # nothing leaves before the review

    # ... which the admins release as they would any file of the run ...
    for n in range(2 if settings.M2D_EXPORT_TWO_PERSON_RULE else 1):
        admin = get_user_model().objects.create_user(
            username=f"fulllog-admin{n}-{os.getpid()}", email=f"fulllog-admin{n}@example.org", is_staff=True
        )
        sign_in_with_second_factor(client, admin)
        decision = {f"decision-{log_file.pk}": "release", "action": "decide", "comment": "losses and timings only"}
        client.post(reverse("exports:review", args=[export.pk]), {**seen_on_page(client, export), **decision})
    log_file.refresh_from_db()
    assert log_file.state == "released"

    # ... and the researcher downloads it whole, from the portal on host A.
    client.force_login(researcher.user)
    page = client.get(reverse("submissions:detail", args=[sid])).content.decode()
    link = re.search(r'<code>platform-logs/run.log</code>(?:(?!</tr>).)*?href="(/exports/download/[^"]+)"', page, re.S)
    assert link, page
    assert fetch(client, link.group(1)) == whole
    print(f"full log of a run on B released: {time.monotonic() - started:.0f} s")


def finished_mlflow_runs(researcher) -> list[dict]:
    return [run for run in mlflow_runs(researcher) if run["info"]["status"] == "FINISHED"]


def running_on_b(hosts, sid: int, line: bytes = b"working 2") -> None:
    """Wait until the submission runs on host B and has printed `line`."""
    wait_until(lambda: line in hosts.run_log_on_b(sid), 300, f"submission {sid} to run on host B")
    assert Submission.objects.get(pk=sid).slot == "beta/cpu0"


def run_on_b(client, hosts, researcher, seconds: int) -> int:
    """Upload a submission while host A's run worker is down, so that host B takes it, and wait
    until it runs there; the caller restarts A's run worker when the test needs it."""
    hosts.a.kill("run")
    sid = upload(client, researcher.user, {"main.py": work(0, seconds=seconds), "requirements.txt": REQUIREMENT})
    running_on_b(hosts, sid)
    return sid


def assert_ran_once_in_the_end(submission, researcher, n: int = 0) -> None:
    """One outcome, one finished MLflow run, the metrics and the export of the attempt that finished."""
    assert events(submission.pk).count("succeeded") == 1
    assert submission.metrics == {"n": float(n), "finished": 1.0}
    assert [f["path"] for f in submission.export.files] == ["result.txt"]
    assert len(finished_mlflow_runs(researcher)) == 1


def test_engine_b_stopped_mid_run_is_requeued_once_onto_a(client, hosts, make_researcher):
    started = time.monotonic()
    researcher = make_researcher("enginestop")
    sid = run_on_b(client, hosts, researcher, seconds=30)  # only host B takes work, until its engine goes
    hosts.a.restart("run")
    hosts.engine.stop()
    try:
        wait_until(lambda: "Docker engine" in Host.objects.get(name="beta").problem, 60, "host B to report its engine")
        submission = wait_finished(sid, timeout=300)
    finally:
        hosts.engine.start()
    assert submission.status == "succeeded", (submission.reason, events(sid))
    assert submission.slot == "alpha/cpu0"
    assert events(sid).count("running") == 2 and events(sid).count("queued") == 2, events(sid)  # requeued once
    assert submission.infrastructure_retries == 1
    requeue = submission.events.filter(to_status="queued").order_by("at", "id").last()
    assert "Docker engine" in requeue.note, requeue.note  # the platform's fault, said so
    assert_ran_once_in_the_end(submission, researcher)
    # Back up, host B takes work again.
    wait_until(lambda: Host.objects.get(name="beta").problem == "", 60, "host B to be healthy again")
    print(f"engine B stopped mid-run: {time.monotonic() - started:.0f} s")


def test_worker_of_b_killed_mid_run_is_adopted_when_it_comes_back(client, hosts, make_researcher):
    started = time.monotonic()
    researcher = make_researcher("adopt")
    sid = run_on_b(client, hosts, researcher, seconds=16)
    hosts.b.kill("run")
    assert hosts.containers_on_b(sid)  # the run goes on without its worker
    time.sleep(5)  # stale (three heartbeats), not yet lost (M2D_RUN_LOST_SECONDS)
    hosts.b.restart("run")
    hosts.a.restart("run")
    submission = wait_finished(sid, timeout=300)
    assert submission.status == "succeeded", (submission.reason, events(sid))
    assert submission.slot == "beta/cpu0"
    assert events(sid).count("running") == 1 and events(sid).count("queued") == 1, events(sid)
    assert "finished" in submission.run_log_tail
    assert_ran_once_in_the_end(submission, researcher)
    wait_until(lambda: not hosts.containers_on_b(sid), 60, "host B to remove the run")
    print(f"worker of B killed, adopted: {time.monotonic() - started:.0f} s")


def test_worker_of_b_killed_for_good_is_requeued_after_the_heartbeat_timeout(client, hosts, make_researcher):
    started = time.monotonic()
    researcher = make_researcher("lost")
    sid = run_on_b(client, hosts, researcher, seconds=40)
    hosts.b.kill("run")
    hosts.a.restart("run")
    submission = wait_finished(sid, timeout=300)
    assert submission.status == "succeeded", (submission.reason, events(sid))
    assert submission.slot == "alpha/cpu0"
    assert events(sid).count("running") == 2 and events(sid).count("queued") == 2, events(sid)
    assert submission.infrastructure_retries == 1
    requeue = submission.events.filter(to_status="queued").order_by("at", "id").last()
    assert "stopped reporting" in requeue.note, requeue.note
    assert_ran_once_in_the_end(submission, researcher)
    # Host B's worker back: what the lost run left there goes, and its slot takes work again.
    hosts.b.restart("run")
    wait_until(lambda: not hosts.containers_on_b(sid), 60, "host B to remove what the lost run left")
    assert Submission.objects.get(pk=sid).status == "succeeded"
    print(f"worker of B lost, requeued: {time.monotonic() - started:.0f} s")


def test_disk_of_b_full_fails_its_run_as_a_platform_fault_and_b_claims_nothing_until_freed(
    client, hosts, make_researcher, settings
):
    started = time.monotonic()
    researcher, other = make_researcher("diskfull"), make_researcher("diskother")
    held = HeldIndex(settings.M2D_PACKAGE_INDEX_URL)  # host B's builds wait at it while the test fills its disk
    hosts.restart_b(M2D_PACKAGE_INDEX_URL=held.url, M2D_HOST_MIN_FREE_BYTES=300 * 1024**2)
    hosts.a.kill("run")
    requirement = unheld_requirement()  # a layer host B has not built: its build asks the index
    data_root = Path(hosts.engine.docker("info", "-f", "{{.DockerRootDir}}").strip())
    filler = data_root / "filler"
    try:
        held.hold()
        sid = upload(client, researcher.user, {"main.py": work(0, seconds=2), "requirements.txt": requirement})
        wait_until(lambda: held.waiting > 0, 300, "host B's build of the image to ask the package index")
        free = shutil.disk_usage(data_root).free
        subprocess.run(["fallocate", "-l", str(free - 4 * 1024**2), str(filler)], check=True)
        held.release()
        wait_until(lambda: Submission.objects.get(pk=sid).status == "queued", 300, "the run on host B to fail")
        # host B says why it takes nothing
        wait_until(lambda: "free" in Host.objects.get(name="beta").problem, 30, "host B to report its full disk")

        # B claims nothing while its disk is full: new work waits for a healthy host.
        waiting = upload(client, other.user, {"main.py": work(1, seconds=2), "requirements.txt": REQUIREMENT})
        time.sleep(10)
        assert Submission.objects.get(pk=waiting).status == "queued"
        assert Submission.objects.get(pk=sid).status == "queued"
        hosts.a.restart("run")
        submission = wait_finished(sid, timeout=300)
        assert submission.status == "succeeded", (submission.reason, events(sid))
        assert submission.slot == "alpha/cpu0"
        assert events(sid).count("running") == 2 and submission.infrastructure_retries == 1, events(sid)
        requeue = submission.events.filter(to_status="queued").order_by("at", "id").last()
        assert "The platform could not make the image available on beta/cpu0" in requeue.note, requeue.note
        assert_ran_once_in_the_end(submission, researcher)
        assert wait_finished(waiting, timeout=300).slot == "alpha/cpu0"

        # Freed, host B takes work again.
        hosts.a.kill("run")
        filler.unlink()
        after = upload(client, other.user, {"main.py": work(2, seconds=2), "requirements.txt": REQUIREMENT})
        done = wait_finished(after, timeout=300)
        assert (done.status, done.slot) == ("succeeded", "beta/cpu0"), done.reason
    finally:
        held.close()
        filler.unlink(missing_ok=True)
    print(f"disk of B full: {time.monotonic() - started:.0f} s")


def test_b_drained_while_it_runs_empties_without_losing_or_duplicating_work(client, hosts, make_researcher):
    from django.core.management import call_command

    started = time.monotonic()
    researcher = make_researcher("drainb")
    first = run_on_b(client, hosts, researcher, seconds=15)
    queued = [
        upload(client, researcher.user, {"main.py": work(n, seconds=5), "requirements.txt": REQUIREMENT})
        for n in (1, 2, 3)
    ]
    hosts.a.restart("run")
    call_command("drain_host", "beta", "--wait", "--timeout", "180")
    emptied = time.monotonic() - started
    on_b = Submission.objects.get(pk=first)
    assert (on_b.status, on_b.slot) == ("succeeded", "beta/cpu0"), on_b.reason  # finished where it ran

    done = [wait_finished(sid, timeout=300) for sid in [first, *queued]]
    assert [s.status for s in done] == ["succeeded"] * 4, [s.reason for s in done]
    assert {s.slot for s in done[1:]} == {"alpha/cpu0"}  # none went to the drained host
    for n, submission in enumerate(done):
        assert events(submission.pk).count("running") == 1  # nothing ran twice
        assert submission.metrics == {"n": float(n), "finished": 1.0}
        assert [f["path"] for f in submission.export.files] == ["result.txt"]
    assert len(finished_mlflow_runs(researcher)) == 4
    assert not hosts.containers_on_b(first)
    call_command("drain_host", "beta", "--undo")
    print(f"host B drained: emptied after {emptied:.0f} s, all done after {time.monotonic() - started:.0f} s")
