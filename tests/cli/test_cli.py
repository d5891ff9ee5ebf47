"""The `m2d` command against a live portal (a web process on the test database) and real workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from accounts.services import api_token_create
from submissions.models import Submission
from tests.conftest import _worker_database_url, free_port, make_zip
from tests.reliability.test_restarts import start_web

pytestmark = [pytest.mark.docker, pytest.mark.services]

TRAIN = """
import mlflow
with mlflow.start_run():
    for epoch in range(3):
        mlflow.log_metric("val_auc", 0.6 + epoch / 10, step=epoch)
print("training finished", flush=True)
"""
CRASH = "print('loading data', flush=True)\nraise SystemExit('no GPU found, giving up')\n"


def m2d_command() -> list[str]:
    """The command pip installed from this repository (`pip install -e .` in the venv)."""
    script = Path(sys.executable).parent / "m2d"
    return [str(script)] if script.exists() else [sys.executable, "-m", "m2d_cli"]


@pytest.fixture
def portal(celery_workers):
    port = free_port()
    web = start_web(port, {**celery_workers.env, "DATABASE_URL": _worker_database_url()})
    yield f"http://127.0.0.1:{port}"
    web.terminate()
    web.wait(timeout=30)


def run_m2d(args, env, cwd, timeout=300):
    return subprocess.run(m2d_command() + args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_submit_wait_status_logs_exports(portal, make_researcher, tmp_path):
    researcher = make_researcher()
    env = {**os.environ, "M2D_URL": portal, "M2D_TOKEN": api_token_create(by=researcher.user).key}
    (tmp_path / "submission.zip").write_bytes(
        make_zip(
            {"main.py": TRAIN, "requirements.txt": "mlflow==3.17.2\n", "weights.bin": os.urandom(3 * 1024**2)}
        ).getvalue()
    )

    done = run_m2d(["submit", "submission.zip", "--wait"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "100%" in done.stderr and "Uploading [" in done.stderr  # the progress bar reached its end
    submission = Submission.objects.get(owner=researcher.user)
    out = done.stdout
    assert f"Submission {submission.pk} received: {portal}/submissions/{submission.pk}/" in out
    # Each state it went through, in order, then the outcome with the final metrics.
    order = [out.index(word) for word in ("  received", "  building", "  running", "  succeeded")]
    assert order == sorted(order)
    assert "val_auc  0.8" in out and f"Submission {submission.pk} succeeded." in out

    status = run_m2d(["status"], env, tmp_path)
    assert status.returncode == 0 and f"{submission.pk}  succeeded" in status.stdout and "val_auc=0.8" in status.stdout
    logs = run_m2d(["logs", str(submission.pk), "--kind", "run"], env, tmp_path)
    assert logs.returncode == 0 and "training finished" in logs.stdout
    exports = run_m2d(["exports", str(submission.pk)], env, tmp_path)
    assert exports.returncode == 0 and "exported nothing" in exports.stdout


def test_a_failed_run_exits_non_zero_with_the_reason(portal, make_researcher, tmp_path):
    researcher = make_researcher()
    config = tmp_path / "home" / ".config" / "m2d" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'url = "{portal}"\ntoken = "{api_token_create(by=researcher.user).key}"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("M2D_URL", "M2D_TOKEN", "XDG_CONFIG_HOME")}
    env["HOME"] = str(tmp_path / "home")
    (tmp_path / "crash.zip").write_bytes(make_zip({"main.py": CRASH, "requirements.txt": ""}).getvalue())

    done = run_m2d(["submit", "crash.zip", "--wait"], env, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed." in done.stdout and "Failed at: run" in done.stdout
    assert "no GPU found, giving up" in done.stdout  # the end of the log, as the log policy allows


def test_a_bad_token_or_zip_says_what_to_do(portal, make_researcher, tmp_path):
    researcher = make_researcher()
    env = {**os.environ, "M2D_URL": portal, "M2D_TOKEN": "0" * 40}
    refused = run_m2d(["status"], env, tmp_path)
    assert refused.returncode == 2 and "Create a new one on your account page" in refused.stderr
    env["M2D_TOKEN"] = api_token_create(by=researcher.user).key
    (tmp_path / "nested.zip").write_bytes(make_zip({"src/lib/main.py": "", "other/requirements.txt": ""}).getvalue())
    bad = run_m2d(["submit", "nested.zip"], env, tmp_path)
    assert bad.returncode == 2 and "main.py" in bad.stderr
    assert not Submission.objects.filter(owner=researcher.user).exists()
