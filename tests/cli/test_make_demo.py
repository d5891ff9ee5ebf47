"""`make demo` on its first start: the CLaM sample is trained, registered and deployed, and the
lines the demo prints answer a case of the synthetic data set: `m2d predict` and curl through
/predictions, and the Open Inference Protocol's infer. Stopping it then stops everything it started."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.cli.test_make_up import NOT_INHERITED
from tests.conftest import REPO, free_port

pytestmark = [pytest.mark.docker, pytest.mark.services, pytest.mark.slow]

STARTED = re.compile(r"ready in \d+ s")
VIEWS = ("LCC", "LMLO", "RCC", "RMLO")


@pytest.fixture(scope="module")
def demo():
    name = f"demo{os.getpid()}"
    web, redis, mlflow, index = free_port(), free_port(), free_port(), free_port()
    # Not under pytest's own folder (mode 0700): nginx's workers, not root, keep the uploads they
    # buffer in the stack's folder, as they do under var/ in a real demo.
    var = Path(tempfile.mkdtemp(prefix=f"m2d-{name}-"))
    var.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    env.update(
        M2D_STACK=name,
        M2D_INSTANCE=f"m2d{name}",
        M2D_VAR_DIR=str(var),
        M2D_WEB_ADDR=f"127.0.0.1:{web}",
        M2D_REDIS_PORT=str(redis),
        M2D_MLFLOW_PORT=str(mlflow),
        M2D_INDEX_PORT=str(index),
        REDIS_URL=f"redis://127.0.0.1:{redis}/0",
        MLFLOW_URL=f"http://127.0.0.1:{mlflow}",
        # a unix socket's path must stay under 108 bytes; the test's var folder is deep
        M2D_SERVE_DIR=f"/tmp/m2d-{name}",
        M2D_RECONCILE_SECONDS="3",  # so that the test sees the periodic reconcilers leave the worker be
    )
    out = var / "demo.out"
    with open(out, "w") as sink:
        process = subprocess.Popen(
            # what `make demo` runs; without make in between, waiting for it waits for its clean-up
            [str(REPO / "scripts/stack.sh"), "demo"],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 1500
        while not STARTED.search(out.read_text()):
            assert process.poll() is None, out.read_text()[-4000:]
            assert time.monotonic() < deadline, out.read_text()[-4000:]
            time.sleep(2)
        yield env, f"http://127.0.0.1:{web}", out.read_text()
    finally:
        # Ctrl-C's trap also stops on TERM; a test run in the background ignores SIGINT.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=300)
            mounted = [line for line in Path("/proc/mounts").read_text().splitlines() if env["M2D_SERVE_DIR"] in line]
        finally:
            subprocess.run([str(REPO / "scripts/services.sh"), "wipe"], cwd=REPO, env=env, capture_output=True)
            subprocess.run(
                f"docker images -q --filter label=org.m2d.instance={env['M2D_INSTANCE']} | xargs -r docker rmi -f",
                shell=True,
                capture_output=True,
            )
            shutil.rmtree(env["M2D_SERVE_DIR"], ignore_errors=True)
            shutil.rmtree(var, ignore_errors=True)
        left = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=org.m2d.instance={env['M2D_INSTANCE']}"],
            capture_output=True,
            text=True,
        )
        assert left.stdout.strip() == ""  # no serving worker outlives the demo
        assert mounted == []  # nor its socket folder


def printed(text: str, start: str) -> str:
    """The line of the demo's printout that starts with `start` (after its indent)."""
    match = re.search(rf"^\s+({re.escape(start)}.*)$", text, re.M)
    assert match, text[-4000:]
    return match[1]


def test_the_demo_model_answers_a_case_as_the_demo_says(demo):
    env, portal, text = demo
    assert '"workers_ready": 1' in text, text[-4000:]
    exported = dict(pair.split("=", 1) for pair in shlex.split(printed(text, "export M2D_URL="))[1:])
    assert exported["M2D_URL"] == portal
    shell_env = {**env, **exported}

    # the m2d line exactly as printed: a case of the synthetic data set's test split
    m2d_line = re.search(r"^\s+(\S*m2d predict clam-malignancy .*)$", text, re.M)[1]
    files = dict(arg.split("=", 1) for arg in shlex.split(m2d_line)[3:])
    assert sorted(files) == sorted(VIEWS) and all(Path(p).is_file() and "/CLaM-sample/" in p for p in files.values())
    asked = subprocess.run(m2d_line, shell=True, env=shell_env, capture_output=True, text=True, timeout=300)
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert "clam-malignancy/1 answered:" in asked.stdout
    assert re.search(r"label: \"(benign|malignant)\"", asked.stdout), asked.stdout

    # the curl line exactly as printed: HTTP basic with the demo researcher's e-mail and token
    curl_line = printed(text, "curl --user researcher@m2d.localhost:")
    curled = subprocess.run(
        curl_line + " -sS --fail-with-body", shell=True, capture_output=True, text=True, timeout=300
    )
    assert curled.returncode == 0, curled.stdout + curled.stderr
    answer = json.loads(curled.stdout)
    assert 0.0 <= answer["malignancy_probability"] <= 1.0 and len(answer["view_probabilities"]) == 4
    assert answer["label"] in ("benign", "malignant")

    # the Open Inference Protocol, same case, same answer
    auth = ("researcher", exported["M2D_TOKEN"])
    body = {
        "inputs": [
            {
                "name": view,
                "datatype": "BYTES",
                "shape": [1],
                "data": [base64.b64encode(Path(files[view]).read_bytes()).decode()],
                "parameters": {"content_type": "image/png"},
            }
            for view in VIEWS
        ]
    }
    assert requests.get(f"{portal}/v2/models/clam-malignancy/ready", auth=auth, timeout=30).json()["ready"] is True
    v2 = requests.post(f"{portal}/v2/models/clam-malignancy/infer", json=body, auth=auth, timeout=300)
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    assert outputs["malignancy_probability"] == [pytest.approx(answer["malignancy_probability"])]
    assert outputs["label"] == [answer["label"]]

    # A few reconciler periods later the same worker still answers: the runs' reconciler does not
    # take it for an orphan of the finished CLaM submission.
    time.sleep(10)
    again = requests.post(f"{portal}/v2/models/clam-malignancy/infer", json=body, auth=auth, timeout=300)
    assert again.status_code == 200, again.text
    ops_log = (Path(env["M2D_VAR_DIR"]) / "log" / f"{env['M2D_STACK']}-ops-worker.log").read_text()
    assert "Task runner.tasks.reconcile[" in ops_log  # it ran meanwhile
    assert not [line for line in ops_log.splitlines() if "removing orphan container" in line and "-serve-" in line]
