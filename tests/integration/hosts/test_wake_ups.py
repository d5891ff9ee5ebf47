"""A wake-up taken by a host that takes no new work is not lost: that host stops listening for
wake-ups and hands the one it took on, so queued work starts at once on the host that may take it,
not one reconciler period later. Two run workers with their own host names share one database and
broker, as two hosts do; host beta is unhealthy throughout (it asks for more free disk than any
disk has)."""

import time

import pytest

from hosts.models import Host
from submissions.models import Submission
from tests.conftest import WorkerPool
from tests.helpers import upload, wait_finished

pytestmark = [pytest.mark.docker, pytest.mark.services]

SHORT = "print('done', flush=True)\n"
RECONCILE_SECONDS = 20  # the backstop a lost wake-up waits for


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.fixture
def beside_an_unhealthy_host(django_db_setup, smtp_server, settings, mailbox):
    common = {
        "M2D_HEARTBEAT_SECONDS": 2,
        "M2D_RECONCILE_SECONDS": RECONCILE_SECONDS,
        "M2D_MAX_RUNNING_PER_RESEARCHER": 0,
    }
    alpha = WorkerPool(smtp_server.port, prefix="wake-", overrides={**common, "M2D_HOST_NAME": "alpha"}).start()
    beta = WorkerPool(
        smtp_server.port,
        prefix="wake-",
        overrides={**common, "M2D_HOST_NAME": "beta", "M2D_HOST_MIN_FREE_BYTES": 2**60},
        roles=("run",),
    ).start()
    alpha.start_beat()
    alpha.use(settings)
    yield alpha, beta
    beta.stop()
    alpha.stop()


def queued_to_running(sid: int) -> float:
    events = Submission.objects.get(pk=sid).events
    queued = events.filter(to_status="queued").order_by("at").first().at
    running = events.filter(to_status="running").order_by("at").first().at
    return (running - queued).total_seconds()


def test_queued_work_starts_at_once_beside_a_host_that_takes_none(client, beside_an_unhealthy_host, make_researcher):
    researcher = make_researcher("wake")
    wait_until(lambda: Host.objects.filter(name="beta").exclude(problem="").exists(), 30, "beta to report its disk")
    delays = []
    # One at a time, so that alpha's slot is free and waiting whenever a wake-up is sent; beta,
    # idle too, takes its share of them.
    for _ in range(6):
        done = wait_finished(upload(client, researcher.user, {"main.py": SHORT, "requirements.txt": ""}), timeout=240)
        assert (done.status, done.slot) == ("succeeded", "alpha/cpu0"), done.reason
        delays.append(queued_to_running(done.pk))
    print("from queued to running: " + ", ".join(f"{delay:.1f} s" for delay in delays))
    assert max(delays) < 5, delays
