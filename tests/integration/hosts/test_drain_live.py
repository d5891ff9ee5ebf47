"""A host drained while it runs work empties: its run finishes where it is, the queued work goes to
the other host, nothing is lost or run twice; lifting the drain lets it take work again. Two run
workers with their own host names and slots share one database and broker, as two hosts do."""

import time

import pytest
from django.core.management import call_command

from hosts.models import Host
from submissions.models import Submission
from tests.conftest import WorkerPool
from tests.helpers import upload, wait_finished

pytestmark = [pytest.mark.docker, pytest.mark.services]

LONG = "import time\nfor i in range(15):\n    print(i, flush=True)\n    time.sleep(1)\n"
SHORT = "print('done', flush=True)\n"


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.fixture
def two_hosts(django_db_setup, smtp_server, settings, mailbox):
    common = {"M2D_HEARTBEAT_SECONDS": 2, "M2D_RECONCILE_SECONDS": 3, "M2D_MAX_RUNNING_PER_RESEARCHER": 0}
    alpha = WorkerPool(smtp_server.port, prefix="drain-", overrides={**common, "M2D_HOST_NAME": "alpha"}).start()
    beta = WorkerPool(
        smtp_server.port, prefix="drain-", overrides={**common, "M2D_HOST_NAME": "beta"}, roles=("run",)
    ).start()
    alpha.start_beat()  # the reconciler wakes the slots again when a draining host took a wake-up
    alpha.use(settings)
    yield alpha, beta
    beta.stop()
    alpha.stop()


def running_events(sid: int) -> int:
    return Submission.objects.get(pk=sid).events.filter(to_status="running").count()


def test_a_drained_host_finishes_its_run_and_takes_no_more(client, two_hosts, make_researcher):
    researcher = make_researcher("drain")
    wait_until(lambda: Host.objects.filter(name__in=["alpha", "beta"]).count() == 2, 30, "both hosts' heartbeats")
    long_runs = [upload(client, researcher.user, {"main.py": LONG, "requirements.txt": ""}) for _ in range(2)]
    wait_until(
        lambda: Submission.objects.filter(pk__in=long_runs, status="running").count() == 2, 240, "a run on each host"
    )
    on_beta = Submission.objects.get(pk__in=long_runs, slot="beta/cpu0").pk
    queued = [upload(client, researcher.user, {"main.py": SHORT, "requirements.txt": ""}) for _ in range(3)]

    started = time.monotonic()
    call_command("drain_host", "beta", "--wait", "--timeout", "120")
    emptied = time.monotonic() - started
    beta_run = Submission.objects.get(pk=on_beta)
    assert beta_run.status == "succeeded" and beta_run.slot == "beta/cpu0", beta_run.reason

    done = [wait_finished(sid, timeout=240) for sid in [*long_runs, *queued]]
    assert [s.status for s in done] == ["succeeded"] * 5, [s.reason for s in done]
    assert {s.slot for s in done if s.pk in queued} == {"alpha/cpu0"}  # none went to the drained host
    assert [running_events(s.pk) for s in done] == [1] * 5  # nothing ran twice
    assert Submission.objects.filter(slot__startswith="beta/", status="running").count() == 0
    print(f"beta emptied {emptied:.1f} s after the drain")

    # Lifting the drain: beta takes work again (alpha, drained now, takes none).
    call_command("drain_host", "alpha")
    call_command("drain_host", "beta", "--undo")
    after = wait_finished(upload(client, researcher.user, {"main.py": SHORT, "requirements.txt": ""}), timeout=240)
    assert (after.status, after.slot) == ("succeeded", "beta/cpu0")
    call_command("drain_host", "alpha", "--undo")
