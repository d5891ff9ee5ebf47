"""Hostile submissions, run for real in the sandbox. Each must end in the state and reason a
researcher should see, and leave the host as it found it."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings

from runner import docker_api
from tests.helpers import mail_text, mlflow_runs, upload, wait_finished

pytestmark = [pytest.mark.docker, pytest.mark.services]
PAYLOADS = Path(__file__).parent / "payloads"
MLFLOW_ONLY = "mlflow==3.17.2\n"


def submit(client, researcher, payload: str, extra: dict | None = None, timeout: float = 180):
    files = {"main.py": (PAYLOADS / payload).read_text(), "requirements.txt": MLFLOW_ONLY, **(extra or {})}
    return wait_finished(upload(client, researcher.user, files), timeout=timeout)


def exported(submission, name: str):
    return json.loads((settings.M2D_EXPORT_ROOT / str(submission.pk) / name).read_text())


def docker_bridge_address() -> str:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True).stdout
    return out.split()[3].split("/")[0] if out else "172.17.0.1"


def test_the_sandbox_from_the_inside(client, sandboxed, make_researcher, host_listener):
    researcher = make_researcher()
    targets = {"host_port": host_listener, "host_addresses": [docker_bridge_address()], "dns_name": "example.org"}
    submission = submit(client, researcher, "sandbox_report.py", {"targets.json": json.dumps(targets)})
    assert submission.status == "succeeded", submission.reason + submission.run_log_tail
    report = exported(submission, "sandbox.json")

    assert (report["uid"], report["gid"]) == (settings.M2D_RUN_UID, settings.M2D_RUN_UID)
    assert report["uid"] != 0 and report["groups"] in ([], [settings.M2D_RUN_UID])
    assert int(report["cap_eff"], 16) == 0 and int(report["cap_prm"], 16) == 0 and int(report["cap_bnd"], 16) == 0
    assert report["no_new_privs"] == "1"

    mounts = {m[1]: m for m in report["mounts"]}
    assert mounts["/"][3].split(",")[0] == "ro"
    assert mounts["/mnt/dataset"][3].split(",")[0] == "ro"
    assert mounts["/mnt/export"][3].split(",")[0] == "rw"
    assert not report["docker_socket_visible"]
    assert not any("docker.sock" in m[1] or "gateway" in m[1] for m in report["mounts"])
    assert report["writable"] == {
        "/": False,
        "/opt/submission": False,
        "/mnt/dataset": False,
        "/mnt/export": True,
        "/tmp": True,
        "/etc": False,
    }
    assert "clam-details-image.csv" in report["dataset_listing"]

    # No network but loopback: no interface, no route, no name resolution, no way to the host.
    assert report["interfaces"] == ["lo"]
    assert report["ipv4_routes"] == [] and report["ipv6_routes"] == []
    assert isinstance(report["dns"], str) and report["dns"].startswith("failed")
    assert report["loopback_open_ports"] == [3001]  # the forwarder to the tracking gateway, nothing else
    assert all(result != "open" for result in report["host_listener"].values()), report["host_listener"]

    limits = report["cgroup"]
    assert int(limits["memory_limit"]) == 256 * 1024**2 == int(limits["memsw_limit"])
    assert limits["pids_max"] == "64"
    assert int(limits["cpu_quota"]) / int(limits["cpu_period"]) == pytest.approx(1.0)
    assert report["shm_bytes"] == 64 * 1024**2 and report["tmp_bytes"] == 32 * 1024**2
    assert report["export_bytes"] <= 20 * 1024**2

    platform_keys = {k for k in report["environment"] if k.startswith(("MLFLOW_", "M2D_"))}
    assert platform_keys <= {
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
        "MLFLOW_DISABLE_TELEMETRY",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
        "M2D_SUBMISSION_ID",
    }
    assert not any(k in report["environment"] for k in ("MLFLOW_ADMIN_PASSWORD", "DJANGO_SECRET_KEY", "DATABASE_URL"))


def test_fork_bomb_is_contained(client, sandboxed, make_researcher):
    submission = submit(client, make_researcher(), "fork_bomb.py")
    assert (submission.status, submission.failure_stage) == ("failed", "run")
    assert "Resource temporarily unavailable" in submission.reason


def test_memory_hog_fails_with_a_plain_reason(client, sandboxed, make_researcher):
    submission = submit(client, make_researcher(), "memory_hog.py")
    assert (submission.status, submission.failure_stage) == ("failed", "run")
    assert submission.reason.startswith("out of memory at 256 MiB")
    assert submission.oom_killed  # as the engine reported it, recorded, not read from the words
    assert "137" not in submission.reason


def test_disk_filler_meets_the_export_cap(client, sandboxed, make_researcher):
    submission = submit(client, make_researcher(), "disk_filler.py")
    assert submission.status == "succeeded", submission.reason
    written = exported(submission, "written.json")
    assert 10 <= written["/mnt/export"] <= 20  # MiB: the kernel said ENOSPC at the cap
    assert written["/tmp"] <= 32
    assert [f["path"] for f in submission.export.files] == ["written.json"]


def test_log_flood_is_capped_with_a_marker(client, sandboxed, make_researcher):
    submission = submit(client, make_researcher(), "log_flood.py")
    assert submission.status == "succeeded", submission.reason
    log = (settings.VAR_DIR / "logs" / str(submission.pk) / "run.log").read_bytes()
    assert len(log) <= 1024 * 1024 + 200
    assert b"bytes of output cut here" in log
    assert log.rstrip().endswith(b"the last line of the flood")
    assert "the last line of the flood" in submission.run_log_tail


def test_busy_loop_times_out(client, sandboxed, mailbox, make_researcher):
    researcher = make_researcher()
    submission = submit(client, researcher, "busy_loop.py")
    assert (submission.status, submission.failure_stage) == ("timed_out", "run")
    assert submission.reason.startswith("timed_out after 25 s")
    mail = mailbox.wait_for(researcher.user.email, 2)[-1]  # received, and the end (the default)
    assert mail["Subject"] == f"[M2D] Submission {submission.pk}: execution timed out"
    assert "timed out at stage run" in mail_text(mail) and "timed_out after 25 s" in mail_text(mail)


def test_silent_sleeper_is_stopped(client, sandboxed, make_researcher):
    submission = submit(client, make_researcher(), "silent_sleeper.py")
    assert (submission.status, submission.failure_stage) == ("timed_out", "run")
    assert "no output for 8 s" in submission.reason


def test_data_set_cannot_leave_through_mlflow(client, sandboxed, make_researcher):
    researcher = make_researcher()
    submission = submit(client, researcher, "exfiltrate_via_mlflow.py")
    assert (submission.status, submission.failure_stage) == ("failed", "run")
    assert "tracking allowance" in submission.reason
    assert "everything went out" not in submission.run_log_tail
    assert submission.tracking_bytes <= 200_000 + 20_000
    runs = mlflow_runs(researcher)
    stored = sum(len(p["value"]) for r in runs for p in r["data"].get("params", []))
    stored += sum(len(t["value"]) for r in runs for t in r["data"].get("tags", []))
    assert stored < 200_000, "more than the allowance reached MLflow"


def test_another_researchers_experiment_stays_closed(client, sandboxed, make_researcher):
    import requests

    owner, intruder = make_researcher("owner"), make_researcher("intruder")
    auth = (owner.mlflow_username, owner.mlflow_password)
    api = f"{settings.MLFLOW_URL}/api/2.0/mlflow"
    run = requests.post(f"{api}/runs/create", json={"experiment_id": owner.mlflow_experiment_id}, auth=auth, timeout=10)
    run_id = run.json()["run"]["info"]["run_id"]
    requests.post(
        f"{api}/runs/log-metric",
        auth=auth,
        timeout=10,
        json={"run_id": run_id, "key": "secret", "value": 42.0, "timestamp": 0, "step": 0},
    ).raise_for_status()
    target = {"experiment_id": owner.mlflow_experiment_id, "experiment_name": owner.mlflow_username, "run_id": run_id}

    submission = submit(client, intruder, "read_other_experiment.py", {"target.json": json.dumps(target)})
    assert submission.status == "succeeded", submission.reason + submission.run_log_tail
    attempts = exported(submission, "attempts.json")
    for name in (
        "get_experiment",
        "get_experiment_by_name",
        "get_run",
        "metric_history",
        "log_into_their_run",
        "list_users",
    ):
        assert attempts[name]["ok"] is False or "403" in attempts[name]["value"], (name, attempts[name])
    assert attempts["search_runs"]["ok"] is False or attempts["search_runs"]["value"] == "[]"
    assert attempts["their_password_against_gateway"]["value"] == "403"
    assert attempts["own_experiment"] == {"ok": True, "value": intruder.mlflow_username}
    history = requests.get(
        f"{api}/metrics/get-history", params={"run_id": run_id, "metric_key": "vandal"}, auth=auth, timeout=10
    ).json()
    assert history.get("metrics", []) == []


def test_the_platform_keeps_serving_while_a_run_misbehaves(
    client, sandboxed, celery_workers, settings, make_researcher
):
    """A busy loop holds the sandbox slot; a normal submission on the other slot still runs."""
    from submissions.models import Submission
    from submissions.services import submission_cancel

    hostile = upload(
        client,
        make_researcher().user,
        {"main.py": (PAYLOADS / "busy_loop.py").read_text(), "requirements.txt": MLFLOW_ONLY},
    )
    deadline = time.monotonic() + 120
    while Submission.objects.get(pk=hostile).status != "running":
        assert time.monotonic() < deadline, "the busy loop did not start"
        time.sleep(0.2)
    for key in ("M2D_QUEUE_BUILD", "M2D_QUEUE_RUN", "M2D_QUEUE_OPS"):
        setattr(settings, key, celery_workers.queues[key.split("_")[-1].lower()])
    normal = upload(client, make_researcher().user, {"main.py": "print('fine')\n", "requirements.txt": ""})
    assert wait_finished(normal, timeout=120).status == "succeeded"
    busy = Submission.objects.get(pk=hostile)
    assert busy.status == "running"  # all along: it ran to its end beside the busy loop
    sandboxed.use(settings)
    submission_cancel(by=None, submission=busy)  # its time limit is another test's
    assert wait_finished(hostile, timeout=60).status == "cancelled"
    while docker_api.list_labelled(settings.M2D_INSTANCE, hostile):  # stopped within the grace (2 s)
        assert time.monotonic() < deadline + 60, "the cancelled run's containers are still there"
        time.sleep(0.2)


def test_the_host_is_left_clean(sandboxed, db):
    """Runs after the others in this module: nothing of theirs remains on the host."""
    from submissions.models import Submission

    unfinished = {
        str(pk) for pk in Submission.objects.exclude(status__in=Submission.FINISHED).values_list("pk", flat=True)
    }
    left = [
        c.name
        for c in docker_api.list_labelled(settings.M2D_INSTANCE)
        if c.labels.get("org.m2d.submission") not in unfinished
    ]
    assert left == []
    volumes = settings.M2D_EXPORT_VOLUME_DIR
    assert not volumes.exists() or list(volumes.iterdir()) == []
    assert not any(str(volumes) in line for line in Path("/proc/self/mounts").read_text().splitlines())
    gateways = settings.M2D_GATEWAY_DIR
    assert not gateways.exists() or list(gateways.iterdir()) == []
    images = docker_api.client().images.list(filters={"label": f"org.m2d.instance={settings.M2D_INSTANCE}"})
    assert images == []
    assert os.path.exists(settings.M2D_DATASET_DIR / "clam-details-image.csv")
