"""The `m2d` command against a whole stack started the way an operator starts one, `make up`: a
researcher signs in, makes an API token on their account page, and submits the toy sample from
the command line; `make down` then stops everything the stack started."""

from __future__ import annotations

import json
import os
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
import requests

from tests.cli.test_cli import m2d_command
from tests.conftest import REPO, free_port

pytestmark = [pytest.mark.docker, pytest.mark.services, pytest.mark.slow]

# What the test run set for its own stack; the stack under test chooses its own.
NOT_INHERITED = (
    "DATABASE_URL", "M2D_TEST_DATABASE_NAME", "CACHE_URL", "M2D_PORTAL_URL", "EMAIL_URL", "M2D_URL",
    "M2D_PACKAGE_INDEX_URL",
)  # fmt: skip


def make(target: str, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["make", target], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    name = f"up{os.getpid()}"
    web, redis, mlflow, index = free_port(), free_port(), free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    env.update(
        M2D_STACK=name,
        M2D_INSTANCE=f"m2d{name}",
        M2D_VAR_DIR=str(tmp_path_factory.mktemp("make-up")),
        M2D_WEB_ADDR=f"127.0.0.1:{web}",
        M2D_REDIS_PORT=str(redis),
        M2D_MLFLOW_PORT=str(mlflow),
        M2D_INDEX_PORT=str(index),
        REDIS_URL=f"redis://127.0.0.1:{redis}/0",
        MLFLOW_URL=f"http://127.0.0.1:{mlflow}",
    )
    up = make("up", env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield env, f"http://127.0.0.1:{web}"
    finally:
        down = make("down", env, timeout=300)
        subprocess.run([str(REPO / "scripts/services.sh"), "wipe"], cwd=REPO, env=env, capture_output=True)
        subprocess.run(
            f"docker images -q --filter label=org.m2d.instance={env['M2D_INSTANCE']} | xargs -r docker rmi -f",
            shell=True,
            capture_output=True,
        )
        assert down.returncode == 0, down.stdout + down.stderr
        # Nothing the stack started is left: no portal, no run containers, no MLflow.
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{web}/accounts/login/", timeout=5)
        left = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=org.m2d.instance={env['M2D_INSTANCE']}"],
            capture_output=True,
            text=True,
        )
        assert left.stdout.strip() == ""


def token_from_account_page(portal: str, login: str, password: str) -> str:
    """Sign in, press "Make a new token" on the account page, read the token it shows once."""
    session = requests.Session()
    page = session.get(f"{portal}/accounts/login/", timeout=30)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
    signed_in = session.post(
        f"{portal}/accounts/login/",
        data={"csrfmiddlewaretoken": csrf, "login": login, "password": password},
        headers={"Referer": f"{portal}/accounts/login/"},
        timeout=30,
    )
    assert signed_in.url.rstrip("/").endswith("/submissions"), signed_in.url
    profile = session.get(f"{portal}/accounts/profile/", timeout=30)
    form = re.search(r'<form method="post" action="([^"]+)">(?:(?!</form>).)*id="create-api-token"', profile.text, re.S)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form[0])[1]
    made = session.post(
        portal + form[1],
        data={"csrfmiddlewaretoken": csrf, "action": "create"},
        headers={"Referer": f"{portal}/accounts/profile/"},
        timeout=30,
    )
    return re.search(r'id="api-token-value" type="text" readonly value="([0-9a-f]+)"', made.text)[1]


def test_the_command_line_against_make_up(stack, tmp_path):
    env, portal = stack
    password = "Toy-sample-pw-2026"
    created = subprocess.run(
        [str(REPO / ".venv/bin/python"), "manage.py", "create_researcher", "cli-rita", "--email",
         "rita@example.org", "--password", password, "--approve"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["status"] == "approved"
    token = token_from_account_page(portal, "cli-rita", password)

    sample = REPO / "sample_code" / "toy-dataset"
    with zipfile.ZipFile(tmp_path / "submission.zip", "w") as zf:
        for name in ("main.py", "requirements.txt"):
            zf.write(sample / name, name)
    cli_env = {**env, "M2D_URL": portal, "M2D_TOKEN": token}

    def m2d(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            m2d_command() + list(args), cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=600
        )

    done = m2d("submit", "submission.zip", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    submission_id = re.search(r"Submission (\d+) received: ", done.stdout)[1]
    assert f"Submission {submission_id} succeeded." in done.stdout
    assert re.search(r"^\s+accuracy\s+[0-9.]+$", done.stdout, re.M), done.stdout  # the final metrics
    assert "Took: " in done.stdout

    listed = m2d("status")
    assert listed.returncode == 0 and re.search(rf"^\s*{submission_id}\s+succeeded", listed.stdout, re.M)
    logs = m2d("logs", submission_id)
    assert logs.returncode == 0 and logs.stdout.strip()
    exports = m2d("exports", submission_id)
    assert exports.returncode == 0 and f"submission {submission_id}" in exports.stdout.lower()
    # The stack's own files: its database and logs live in its var folder, not the test run's.
    assert (Path(env["M2D_VAR_DIR"]) / "log" / f"{env['M2D_STACK']}-web.log").exists()
