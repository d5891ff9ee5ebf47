"""Hostile packages, built for real: a build runs the setup.py of whatever source package a
requirements.txt names. Its only way out is the platform's package index; it runs as a non-root
builder within its limits, and a build that meets one ends saying which, while the next builds."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from django.conf import settings

from runner import docker_api
from submissions.models import Submission
from submissions.services import submission_cancel
from tests.conftest import WorkerPool
from tests.helpers import upload, wait_finished
from tests.package_index import TestIndex

from .test_hostile_runs import docker_bridge_address

pytestmark = [pytest.mark.docker, pytest.mark.services]

BUILD_LIMITS = {
    "M2D_BUILD_MEMORY": "1g",
    "M2D_BUILD_PIDS": 48,
    "M2D_BUILD_MAX_BYTES": 200 * 1024**2,
    "M2D_BUILD_TIMEOUT": 60,
    "M2D_STOP_GRACE_SECONDS": 2,
}
# The build that never ends meets a shorter time limit than the others need, on workers of its own.
SHORT_BUILD_TIMEOUT = 15
NORMAL = "sympy==1.13.3\n"  # not in the runtime image: it comes through the index

NETPROBE = """
import json, os, socket, subprocess
results = {"uid": os.getuid(), "interfaces": sorted(os.listdir("/sys/class/net"))}
with open("/proc/net/route") as routes:
    results["routes"] = routes.read().splitlines()[1:]
for name, (host, port) in TARGETS.items():
    probe = socket.socket()
    probe.settimeout(3)
    try:
        code = probe.connect_ex((host, port))
        results[name] = "open" if code == 0 else os.strerror(code)
    except OSError as exc:
        results[name] = str(exc)
    finally:
        probe.close()
with open("/opt/venv/netprobe.json", "w") as out:
    json.dump(results, out)
print("netprobe:", json.dumps(results))
"""

HOSTILE = {
    "fork-bomb": ("import os\nwhile True:\n    os.fork()\n", "processes and threads (M2D_BUILD_PIDS)"),
    "memory-hog": ("hog = [bytearray(64 * 1024**2) for _ in range(64)]\n", "of memory (M2D_BUILD_MEMORY)"),
    "big-file": (
        "with open('/tmp/fill', 'wb') as f:\n    while True:\n        f.write(b'x' * 1024**2)\n",
        "(M2D_BUILD_MAX_BYTES)",  # the size of one file, or all the build wrote: whichever it meets first
    ),
    "many-files": (
        "import time\nfor i in range(60):\n"
        "    open(f'/tmp/fill{i}', 'wb').write(b'x' * 10 * 1024**2)\n    time.sleep(0.1)\n",
        "(M2D_BUILD_MAX_BYTES)",
    ),
    "sleep-forever": (
        "import time\ntime.sleep(10**6)\n",
        f"longer than its limit of {SHORT_BUILD_TIMEOUT} s (M2D_BUILD_TIMEOUT)",
    ),
}


@pytest.fixture(scope="module")
def hostile_index(django_db_setup):
    index = TestIndex(settings.M2D_PACKAGE_INDEX_URL)
    yield index
    index.delete()


@pytest.fixture(scope="module")
def build_pool(hostile_index, smtp_server):
    pool = WorkerPool(
        smtp_server.port,
        prefix="builds-",
        overrides={**BUILD_LIMITS, "M2D_PACKAGE_INDEX_URL": hostile_index.simple_url},
        roles=("build", "run", "ops"),
    ).start()
    yield pool
    pool.stop()


@pytest.fixture(scope="module")
def short_timeout_pool(hostile_index, smtp_server):
    overrides = {**BUILD_LIMITS, "M2D_BUILD_TIMEOUT": SHORT_BUILD_TIMEOUT}
    pool = WorkerPool(
        smtp_server.port,
        prefix="builds-short-",
        overrides={**overrides, "M2D_PACKAGE_INDEX_URL": hostile_index.simple_url},
        roles=("build",),
    ).start()
    yield pool
    pool.stop()


@pytest.fixture
def builds(build_pool, settings, mailbox):
    build_pool.use(settings)
    return build_pool


def submit(client, researcher, requirements: str, main_py: str = "print('built and ran')\n") -> Submission:
    return wait_finished(upload(client, researcher.user, {"main.py": main_py, "requirements.txt": requirements}), 300)


def test_a_build_reaches_the_index_and_nothing_else(client, builds, hostile_index, make_researcher, host_listener):
    redis_port = int(settings.REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    mlflow_port = int(settings.MLFLOW_URL.rsplit(":", 1)[1])
    index_port = int(settings.M2D_PACKAGE_INDEX_URL.split("//", 1)[1].split("/")[0].rsplit(":", 1)[1])
    targets = {
        "host_on_the_docker_bridge": (docker_bridge_address(), host_listener),
        "redis_on_the_host": ("127.0.0.1", redis_port),
        "mlflow_on_the_host": ("127.0.0.1", mlflow_port),
        "index_on_the_host": ("127.0.0.1", index_port),
        "mlflow_on_the_bridge": (docker_bridge_address(), mlflow_port),
    }
    hostile_index.upload_sdist("netprobe", "0.1", f"TARGETS = {targets!r}\n{NETPROBE}")
    main_py = "import shutil\nshutil.copy('/opt/venv/netprobe.json', '/mnt/export/netprobe.json')\nimport sympy\n"
    submission = submit(client, make_researcher(), NORMAL + "netprobe==0.1\n", main_py)
    assert submission.status == "succeeded", submission.reason + submission.build_log_tail

    report = json.loads((settings.M2D_EXPORT_ROOT / str(submission.pk) / "netprobe.json").read_text())
    assert report["uid"] == 2000  # the builder, not root
    assert report["interfaces"] == ["lo"] and report["routes"] == []
    for name in targets:
        assert report[name] != "open", (name, report)
    assert "Network is unreachable" in report["host_on_the_docker_bridge"]
    assert "Connection refused" in report["redis_on_the_host"]  # its own loopback: nothing listens


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_hostile_setup_py_meets_a_named_limit_and_the_next_build_goes_on(
    client, builds, hostile_index, make_researcher, kind, settings, request
):
    code, limit = HOSTILE[kind]
    name = f"hostile-{kind}"
    hostile_index.upload_sdist(name, "0.1", code)
    researcher = make_researcher()
    if kind == "sleep-forever":
        request.getfixturevalue("short_timeout_pool").use(settings)
    submission = submit(client, researcher, f"{name}==0.1\n")
    builds.use(settings)
    assert submission.status in ("failed", "timed_out") and submission.failure_stage == "build", submission.reason
    assert limit in submission.reason, submission.reason + "\n---\n" + submission.build_log_tail
    if "M2D_BUILD_MAX_BYTES" in limit:
        assert "200" in submission.reason  # MiB, the limit of this pool

    following = submit(client, researcher, NORMAL, "import sympy\nprint('built and ran')\n")
    assert following.status == "succeeded", following.reason + following.build_log_tail


def listening_beside_a_door(port: int) -> bool:
    """Whether something listens on that port in the network namespace of one of the instance's
    build doors (read from the host: the namespace's TCP table under its first process)."""
    doors = docker_api.client().containers.list(
        filters={"label": [f"{docker_api.LABEL_INSTANCE}={settings.M2D_INSTANCE}", f"{docker_api.LABEL_ROLE}=door"]}
    )
    for door in doors:
        table = Path(f"/proc/{door.attrs['State']['Pid']}/net/tcp")
        rows = [line.split() for line in table.read_text().splitlines()[1:]] if table.exists() else []
        if any(row[1].endswith(f":{port:04X}") and row[3] == "0A" for row in rows):  # 0A: LISTEN
            return True
    return False


LISTENER = """
import socket, sys, time
listener = socket.socket()
listener.bind(("127.0.0.1", 7777))
listener.listen()
print("listening on the build's loopback", file=sys.stderr, flush=True)
time.sleep(10**6)
"""


def test_a_build_stopped_half_way_leaves_nothing_the_next_build_can_reach(
    client, builds, hostile_index, make_researcher
):
    """Builds of one worker share a kept door to the index, one at a time; a build that does not end
    with its image (here: cancelled while a step listens on its loopback) takes that door with it."""
    hostile_index.upload_sdist("listener", "0.1", LISTENER)
    researcher = make_researcher()
    sid = upload(client, researcher.user, {"main.py": "print('never')\n", "requirements.txt": "listener==0.1\n"})
    deadline = time.monotonic() + 180
    while not listening_beside_a_door(7777):  # uv shows a build's output only when it fails
        assert time.monotonic() < deadline, "the listener's build did not start"
        time.sleep(0.2)
    submission_cancel(by=researcher.user, submission=Submission.objects.get(pk=sid))
    assert wait_finished(sid, 120).status == "cancelled"

    targets = {"the_stopped_build_s_listener": ("127.0.0.1", 7777)}
    hostile_index.upload_sdist("loopprobe", "0.1", f"TARGETS = {targets!r}\n{NETPROBE}")
    main_py = "import shutil\nshutil.copy('/opt/venv/netprobe.json', '/mnt/export/netprobe.json')\n"
    following = submit(client, researcher, NORMAL + "loopprobe==0.1\n", main_py)
    assert following.status == "succeeded", following.reason + following.build_log_tail
    report = json.loads((settings.M2D_EXPORT_ROOT / str(following.pk) / "netprobe.json").read_text())
    assert "Connection refused" in report["the_stopped_build_s_listener"], report
