"""Crashes of the platform's own processes: no submission is lost, none stays stuck, the
researcher loses nothing and is never blamed."""

import os
import time
from pathlib import Path

import pytest
from django.conf import settings

from runner import docker_api
from submissions.models import Submission
from tests.helpers import mlflow_runs, upload, wait_finished
from tests.package_index import unheld_requirement

pytestmark = [pytest.mark.docker, pytest.mark.services]

LONG_RUN = """
import os
import time
from pathlib import Path
from pathlib import Path

import mlflow

mlflow.set_experiment(__import__("os").environ["MLFLOW_EXPERIMENT_NAME"])
with mlflow.start_run():
    mlflow.log_metric("started", 1)
    print("started", flush=True)
    for second in range(14):
        print(f"working {second}", flush=True)
        time.sleep(1)
    mlflow.log_metric("finished", 1)
Path("/mnt/export/done.txt").write_text("done")
print("finished", flush=True)
"""


def wait_until(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def statuses(submission_id):
    return [e.to_status for e in Submission.objects.get(pk=submission_id).events.all()]


def test_run_worker_killed_mid_run_is_adopted(client, crash_pool, make_researcher):
    researcher = make_researcher()
    sid = upload(client, researcher.user, {"main.py": LONG_RUN, "requirements.txt": "mlflow==3.17.2\n"})
    log = settings.VAR_DIR / "logs" / str(sid) / "run.log"
    wait_until(lambda: log.exists() and b"working 2" in log.read_bytes(), 120, "the run to start")

    crash_pool.kill("run")
    assert docker_api.run_exists(f"m2d-{settings.M2D_INSTANCE}-run-{sid}")  # the run goes on without its worker
    crash_pool.restart("run")

    submission = wait_finished(sid, timeout=120)
    assert submission.status == "succeeded", submission.reason + submission.run_log_tail
    assert statuses(sid).count("running") == 1 and statuses(sid)[-1] == "succeeded"  # recorded once
    assert submission.metrics == {"started": 1.0, "finished": 1.0}
    assert [f["path"] for f in submission.export.files] == ["done.txt"]
    assert "finished" in submission.run_log_tail
    assert len(mlflow_runs(researcher)) == 1
    assert docker_api.list_labelled(settings.M2D_INSTANCE, sid) == []


def test_build_worker_killed_mid_build_builds_again(client, crash_pool, held_index, make_researcher):
    researcher = make_researcher()
    held_index.hold()  # the build waits on the package index until the test lets it go on
    main_py = "print('built twice, run once')\n"
    sid = upload(client, researcher.user, {"main.py": main_py, "requirements.txt": unheld_requirement()})
    wait_until(lambda: held_index.waiting > 0, 120, "the build to ask the package index")

    crash_pool.kill("build")
    crash_pool.restart("build")
    held_index.release()

    submission = wait_finished(sid, timeout=300)
    assert submission.status == "succeeded", submission.reason + submission.build_log_tail
    events = statuses(sid)
    assert events.count("building") == 2 and events.count("running") == 1, events
    assert "built twice, run once" in submission.run_log_tail


def test_redis_outage_loses_nothing(client, crash_pool, make_researcher):
    """Submissions made while the broker is down are stored, then built and run once it is back."""
    import subprocess

    researcher = make_researcher()
    in_flight = upload(client, researcher.user, {"main.py": LONG_RUN, "requirements.txt": "mlflow==3.17.2\n"})
    wait_until(lambda: Submission.objects.get(pk=in_flight).status == "running", 120, "the first run")
    port = settings.REDIS_URL.rsplit(":", 1)[1].split("/")[0]
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], check=False, capture_output=True)
    stopped = time.monotonic()
    try:
        during = [
            upload(client, researcher.user, {"main.py": f"print({n})\n", "requirements.txt": ""}) for n in range(2)
        ]
        assert all(Submission.objects.get(pk=s).status == "received" for s in during)
        time.sleep(max(0.0, 30 - (time.monotonic() - stopped)))  # thirty seconds without a broker
    finally:
        subprocess.run(
            ["redis-server", "--port", port, "--bind", "127.0.0.1", "--daemonize", "yes", "--save", ""],
            check=True,
            capture_output=True,
        )
    assert wait_finished(in_flight, timeout=180).status == "succeeded"
    for sid in during:
        assert wait_finished(sid, timeout=180).status == "succeeded"


def engine_exited(pid: int) -> bool:
    """An engine that an earlier restart started is this process's child: once it exits it stays a
    zombie, /proc/PID and all, until this process reaps it, which it does here."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # started by someone else, who reaps it
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def restart_docker_engine() -> None:
    """Stop the engine the way an upgrade or a crash would, and start it again as it was."""
    import os
    import signal
    import subprocess

    # the engine the platform uses, not another one this host may run beside it
    engine = docker_api.engine_url().removeprefix("unix://").encode()
    for pid in map(int, subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()):
        command = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        if any(engine in part for part in command) or not any(p.startswith((b"--host", b"-H")) for p in command):
            break
    else:
        pytest.fail(f"no dockerd serves {engine.decode()}")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while not engine_exited(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not engine_exited(pid):  # an engine slow to shut down is crashed instead, as a crash would
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: engine_exited(pid), 30, "the engine to be killed")
    log = open(settings.VAR_DIR / "log" / "dockerd-restarted.log", "ab")  # noqa: SIM115 - the engine keeps it
    subprocess.Popen([c.decode() for c in command], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    assert docker_api.wait_for_engine(60), "the engine did not come back"


@pytest.mark.skipif(not Path("/proc").exists() or os.geteuid() != 0, reason="needs to restart the host's engine")
def test_docker_engine_restart_during_a_run(client, crash_pool, make_researcher):
    researcher = make_researcher()
    sid = upload(client, researcher.user, {"main.py": LONG_RUN, "requirements.txt": "mlflow==3.17.2\n"})
    log = settings.VAR_DIR / "logs" / str(sid) / "run.log"
    wait_until(lambda: log.exists() and b"working 3" in log.read_bytes(), 120, "the run to start")

    restart_docker_engine()
    docker_api.client.cache_clear()

    submission = wait_finished(sid, timeout=240)
    events = statuses(sid)
    assert submission.status == "succeeded", (submission.reason, events)
    assert "failed" not in events and events.count("queued") <= 2, events  # at most one requeue
    assert submission.metrics.get("finished") == 1.0
    assert submission.infrastructure_retries == events.count("queued") - 1
