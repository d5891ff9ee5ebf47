"""Restarts of the web process and of the whole platform: nothing half-stored, nothing lost."""

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from django.conf import settings

from submissions.models import Submission
from tests.conftest import REPO, _worker_database_url, free_port, make_zip
from tests.helpers import upload, wait_finished
from tests.package_index import unheld_requirement
from tests.reliability.test_crashes import LONG_RUN, statuses, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.services]


def start_web(port: int, env: dict) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: _answers(port), 30, "the portal to start")
    return process


def _answers(port: int) -> bool:
    return _answers_at(f"http://127.0.0.1:{port}/accounts/login/")


def _answers_at(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


def stored_files():
    folder = settings.MEDIA_ROOT / "submissions"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_web_restart_during_an_upload(client, crash_pool, make_researcher):
    researcher = make_researcher()
    client.force_login(researcher.user)
    session_id = client.cookies["sessionid"].value
    env = {**crash_pool.env, "DATABASE_URL": _worker_database_url()}
    port = free_port()
    web = start_web(port, env)
    http = requests.Session()
    http.cookies.set("sessionid", session_id)
    token = http.get(f"http://127.0.0.1:{port}/submissions/new/", timeout=10).cookies.get("csrftoken")
    http.cookies.set("csrftoken", token)
    before = stored_files()

    # Half an upload, then the web process dies.
    boundary = "m2dboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="archive"; filename="submission.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    request_head = (
        f"POST /submissions/new/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: sessionid={session_id}; "
        f"csrftoken={token}\r\nX-CSRFToken: {token}\r\nContent-Type: multipart/form-data; boundary={boundary}"
        f"\r\nContent-Length: {len(head) + 5_000_000}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with contextlib.suppress(ConnectionError):  # the server may give up on the body first
            raw.sendall(request_head + head + b"PK" + os.urandom(1_000_000))
        time.sleep(0.5)
        os.killpg(web.pid, signal.SIGKILL)
        web.wait(timeout=10)
    web = start_web(port, env)
    try:
        assert not Submission.objects.filter(owner=researcher.user).exists()
        assert stored_files() == before
        # The researcher uploads again, and it goes through.
        archive = make_zip({"main.py": "print('second try')\n", "requirements.txt": ""}).getvalue()
        response = http.post(
            f"http://127.0.0.1:{port}/submissions/new/",
            files={"archive": ("submission.zip", io.BytesIO(archive), "application/zip")},
            headers={"X-CSRFToken": token, "Referer": f"http://127.0.0.1:{port}/submissions/new/"},
            allow_redirects=False,
            timeout=30,
        )
        assert response.status_code == 302, response.text[:500]
        submission = Submission.objects.get(owner=researcher.user)
        assert wait_finished(submission.pk, 120).status == "succeeded"
    finally:
        os.killpg(web.pid, signal.SIGKILL)


def test_everything_stopped_and_started_with_jobs_in_every_state(client, crash_pool, held_index, make_researcher):
    researcher = make_researcher()
    running = upload(client, researcher.user, {"main.py": LONG_RUN, "requirements.txt": "mlflow==3.17.2\n"})
    wait_until(lambda: Submission.objects.get(pk=running).status == "running", 120, "the run")
    queued = upload(client, researcher.user, {"main.py": "print('queued')\n", "requirements.txt": ""})
    wait_until(lambda: Submission.objects.get(pk=queued).status == "queued", 120, "the queue")
    held_index.hold()  # the build waits at the package index through the power cut
    files = {"main.py": "print('built')\n", "requirements.txt": unheld_requirement()}
    building = upload(client, researcher.user, files)
    wait_until(lambda: held_index.waiting > 0, 120, "the build to ask the package index")
    received = upload(client, researcher.user, {"main.py": "print('received')\n", "requirements.txt": ""})

    # Everything stops at once, as in a power cut: workers, beat, the broker, MLflow.
    for process in crash_pool.processes:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    port = settings.REDIS_URL.rsplit(":", 1)[1].split("/")[0]
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], capture_output=True)
    mlflow = f"m2d-{os.environ['M2D_STACK']}-mlflow"
    subprocess.run(["docker", "stop", mlflow], capture_output=True, check=True)
    time.sleep(3)

    subprocess.run(
        ["redis-server", "--port", port, "--bind", "127.0.0.1", "--daemonize", "yes", "--save", ""],
        check=True,
        capture_output=True,
    )
    subprocess.run(["docker", "start", mlflow], capture_output=True, check=True)
    wait_until(lambda: _answers_at(f"{settings.MLFLOW_URL}/health"), 60, "MLflow")
    crash_pool.processes = []
    held_index.release()
    crash_pool.start()
    crash_pool.start_beat()

    outcomes = {sid: wait_finished(sid, timeout=300) for sid in (running, queued, building, received)}
    assert {sid: s.status for sid, s in outcomes.items()} == dict.fromkeys(outcomes, "succeeded"), {
        sid: (s.status, s.reason, statuses(sid)) for sid, s in outcomes.items()
    }
    for sid in outcomes:
        assert statuses(sid).count("succeeded") == 1
