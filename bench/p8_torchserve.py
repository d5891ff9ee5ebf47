"""P8 beside TorchServe: the CLaM sample's released folder served by TorchServe (what the seed model
store ran), installed here from the package index into a virtual environment of its own with
Debian's Java, when the bench first needs it. TorchServe runs as a plain process of this machine:
no container, no sandbox, no authentication (its token authorisation is turned off), no audit.

Nothing here runs at import: a bench without TorchServe (BENCH_TORCHSERVE=0, or an install that
fails) says why in its figure and goes on.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import requests
from common import REPO, free_port, say

VENV = REPO / "var" / "torchserve"  # outside the bench stack's folder, which each bench wipes
PACKAGES = ["torch==2.13.0", "torchserve", "torch-model-archiver", "numpy", "pillow", "pyyaml"]
JAVA_PACKAGE = "openjdk-17-jre-headless"

# TorchServe's handler for a model of the platform's predict contract (predict.py's Model with load
# and predict, named in the card): each request's multipart parts are its inputs, PNGs decoded to
# arrays as the platform's own server decodes them.
HANDLER = """
import io, json, os, sys

import numpy as np
from PIL import Image

_model = None


def handle(data, context):
    global _model
    if _model is None:
        model_dir = context.system_properties["model_dir"]
        sys.path.insert(0, model_dir)
        with open(os.path.join(model_dir, "m2d-model.json")) as f:
            entrypoint = json.load(f).get("entrypoint", "predict.py:Model")
        module, _, name = entrypoint.partition(":")
        _model = getattr(__import__(module.removesuffix(".py")), name)()
        _model.load(model_dir, "cpu")
    if data is None:
        return None
    answers = []
    for row in data:
        inputs = {}
        for key, value in row.items():
            raw = bytes(value)
            inputs[key] = np.asarray(Image.open(io.BytesIO(raw))) if raw.startswith(b"\\x89PNG") else raw
        answers.append(_model.predict(inputs, {}))
    return answers
"""


class NotInstalled(Exception):
    pass


def _run(command: list[str], what: str, timeout: float, env: dict | None = None) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NotInstalled(f"{what}: {exc}") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if not line.startswith("WARNING: Location")]
        raise NotInstalled(f"{what} exited {done.returncode}: {' | '.join(lines[-6:])[-600:]}")


def installed() -> Path:
    """TorchServe's bin folder, installing Java and the virtual environment when they are missing."""
    if os.environ.get("BENCH_TORCHSERVE") == "0":
        raise NotInstalled("not measured (BENCH_TORCHSERVE=0)")
    if shutil.which("java") is None:
        say(f"P8: installing Debian's {JAVA_PACKAGE} for TorchServe")
        apt = ["apt-get", "install", "-y", "-q", JAVA_PACKAGE]
        if os.getuid() != 0:
            apt.insert(0, "sudo")
        _run(apt, f"apt-get install {JAVA_PACKAGE}", 900, {**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    bin_dir = VENV / "bin"
    if not (bin_dir / "torchserve").exists() or not (bin_dir / "torch-model-archiver").exists():
        say(f"P8: installing TorchServe in {VENV} (torch 2.13.0 from the wheelhouse; a few minutes)")
        if not (bin_dir / "python").exists():
            _run(["python3", "-m", "venv", str(VENV)], "python3 -m venv", 120)
        pip = [str(bin_dir / "pip"), "install", "-q", *PACKAGES]
        if os.environ.get("M2D_WHEELHOUSE"):
            pip[2:2] = ["--find-links", os.environ["M2D_WHEELHOUSE"]]
        _run(pip, "pip install " + " ".join(PACKAGES), 1800)
    return bin_dir


def _archive(bin_dir: Path, folder: Path, work: Path) -> Path:
    """The released folder as a model archive (.mar) with the handler above."""
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    (work / "m2d_handler.py").write_text(HANDLER)
    extra = ",".join(str(entry) for entry in sorted(folder.iterdir()))
    _run(
        [str(bin_dir / "torch-model-archiver"), "--model-name", "clam", "--version", "1",
         "--handler", str(work / "m2d_handler.py"), "--extra-files", extra, "--export-path", str(store)],
        "torch-model-archiver", 300,
    )  # fmt: skip
    return store


def figures(folder: Path, case: dict[str, bytes], warm_n: int, cold_repeats: int) -> dict:
    """{"version", "jvm", "cold": [s], "warm": [s]} for TorchServe serving `folder` with one worker."""
    bin_dir = installed()
    work = VENV.parent / "torchserve-work"
    work.mkdir(parents=True, exist_ok=True)
    store = _archive(bin_dir, folder, work)
    ports = {"inference": free_port(), "management": free_port(), "metrics": free_port()}
    (work / "config.properties").write_text(
        "".join(f"{kind}_address=http://127.0.0.1:{port}\n" for kind, port in ports.items())
        + "disable_token_authorization=true\nenable_model_api=true\ninstall_py_dep_per_model=false\n"
        "disable_system_metrics=true\ndefault_workers_per_model=1\n"
    )
    infer, manage = (f"http://127.0.0.1:{ports[k]}" for k in ("inference", "management"))
    version = subprocess.run([str(bin_dir / "torchserve"), "--version"], capture_output=True, text=True).stdout
    started = time.monotonic()
    server = subprocess.Popen(
        [str(bin_dir / "torchserve"), "--start", "--foreground", "--ncs", "--model-store", str(store),
         "--ts-config", str(work / "config.properties")],
        cwd=work, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        stdout=(work / "torchserve.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        facts: dict = {"version": version.strip().split()[-1] if version.strip() else "?", "cold": [], "warm": []}
        deadline = started + 300
        while True:
            try:
                if requests.get(f"{infer}/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                tail = (work / "torchserve.log").read_text(errors="replace")[-600:]
                raise NotInstalled(f"TorchServe did not start: {tail}")
            time.sleep(0.05)
        facts["jvm"] = time.monotonic() - started

        def scaled(query: str) -> float:
            began = time.monotonic()
            answer = requests.request(
                "PUT" if "min_worker" in query else "POST", f"{manage}/models{query}", timeout=600
            )
            if answer.status_code != 200:
                raise NotInstalled(f"TorchServe's management API answered {answer.status_code}: {answer.text[:300]}")
            return time.monotonic() - began

        facts["cold"].append(scaled("?url=clam.mar&initial_workers=1&synchronous=true"))
        for _ in range(cold_repeats - 1):
            scaled("/clam?min_worker=0&max_worker=0&synchronous=true")
            facts["cold"].append(scaled("/clam?min_worker=1&max_worker=1&synchronous=true"))
        session = requests.Session()
        parts = {view: (f"{view}.png", data, "image/png") for view, data in case.items()}
        for i in range(warm_n + 3):
            began = time.perf_counter()
            answer = session.post(f"{infer}/predictions/clam", files=parts, timeout=120)
            if answer.status_code != 200:
                raise NotInstalled(f"TorchServe answered {answer.status_code}: {answer.text[:300]}")
            if i >= 3:  # connections open, the worker warm
                facts["warm"].append(time.perf_counter() - began)
        return facts
    finally:
        _stop(server)


def _stop(server: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
        try:
            os.killpg(server.pid, sig)
            server.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
