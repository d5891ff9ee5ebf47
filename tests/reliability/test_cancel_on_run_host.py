"""A run host stops its own cancelled run. The cancel also sends a stop to a maintenance worker,
but on a run host of its own (docs/operations.md, "Add a GPU host") that worker is on the first
host, whose engine does not hold the run: here no maintenance worker listens at all."""

import time

import pytest

from runner import docker_api
from submissions.models import Submission
from submissions.services import submission_cancel
from tests.conftest import WorkerPool
from tests.helpers import upload, wait_finished
from tests.reliability.conftest import FAST_RECOVERY
from tests.reliability.test_crashes import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.services]

SLEEPER = "import time\nfor i in range(300):\n    print(i, flush=True)\n    time.sleep(1)\n"


@pytest.fixture
def run_host(django_db_setup, smtp_server, settings, mailbox):
    """A build and a run worker, and no maintenance worker: nothing but the run host can stop a run."""
    pool = WorkerPool(smtp_server.port, prefix="runhost-", overrides=FAST_RECOVERY, roles=("build", "run")).start()
    pool.use(settings)
    yield pool
    pool.stop()


def test_a_cancelled_run_is_stopped_by_its_own_run_host(client, run_host, make_researcher, settings):
    researcher = make_researcher()
    sid = upload(client, researcher.user, {"main.py": SLEEPER, "requirements.txt": ""})
    wait_until(lambda: Submission.objects.get(pk=sid).status == "running", 180, "the run")
    name = f"m2d-{settings.M2D_INSTANCE}-run-{sid}"
    wait_until(lambda: docker_api.run_is_running(name), 120, "its container")

    cancelled = time.monotonic()
    submission_cancel(by=researcher.user, submission=Submission.objects.get(pk=sid))
    # within a heartbeat (2 s) and the stop grace (3 s) and some, long before the run's 300 s
    wait_until(lambda: not docker_api.run_is_running(name), 60, "the run host to stop its cancelled run")
    stopped = time.monotonic() - cancelled
    finished = wait_finished(sid, timeout=60)
    assert finished.status == "cancelled"
    print(f"stopped by its run host {stopped:.1f} s after the cancel")
