"""Scheduling with real workers: cancel in every state, and two run workers with disjoint slots
sharing one database and one broker."""

import time

import pytest
from django.conf import settings

from runner import docker_api
from submissions.models import Submission
from submissions.services import submission_cancel
from tests.conftest import WorkerPool
from tests.helpers import upload, wait_finished
from tests.package_index import unheld_requirement
from tests.reliability.test_crashes import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.services]

SLEEPER = "import time\nfor i in range(60):\n    print(i, flush=True)\n    time.sleep(1)\n"


def submit(client, researcher, main=SLEEPER, requirements=""):
    return upload(client, researcher.user, {"main.py": main, "requirements.txt": requirements})


def status(sid):
    return Submission.objects.get(pk=sid).status


def test_cancel_in_every_state(client, crash_pool, held_index, make_researcher, settings):
    researcher = make_researcher()
    admin = researcher.user  # the owner cancels; staff may too

    # running: the container is stopped within its grace period
    running = submit(client, researcher)
    wait_until(lambda: status(running) == "running", 120, "the first run")
    # queued: behind the running one on the single slot
    queued = submit(client, researcher, "print('never')\n")
    wait_until(lambda: status(queued) == "queued", 120, "the second to queue")
    # building: a build held at the package index until it is cancelled
    held_index.hold()
    building = submit(client, researcher, "print('never')\n", unheld_requirement())
    wait_until(lambda: held_index.waiting > 0, 120, "the build to ask the package index")
    assert status(building) == "building"
    # received: nobody builds it (its build queue has no worker)
    settings.M2D_QUEUE_BUILD = "nobody-builds-here"
    received = submit(client, researcher, "print('never')\n")
    assert status(received) == "received"

    for sid in (received, building, queued, running):
        submission_cancel(by=admin, submission=Submission.objects.get(pk=sid))

    for sid in (received, building, queued, running):
        submission = wait_finished(sid, timeout=60)
        assert submission.status == "cancelled"
        assert "running" not in [e.to_status for e in submission.events.all()] or sid == running
    wait_until(lambda: not docker_api.run_exists(f"m2d-{settings.M2D_INSTANCE}-run-{running}"), 60, "the stop")
    time.sleep(3)  # nothing moves a cancelled submission again
    assert {status(s) for s in (received, building, queued, running)} == {"cancelled"}
    images = docker_api.client().images.list(filters={"label": f"org.m2d.submission={building}"})
    assert images == []
    # Cancelled work does not count against the researcher: a new submission runs.
    settings.M2D_QUEUE_BUILD = crash_pool.all_queues["build"]
    assert wait_finished(submit(client, researcher, "print('after')\n"), 120).status == "succeeded"


@pytest.fixture
def two_hosts(django_db_setup, smtp_server, settings, mailbox):
    """One machine, two run workers with disjoint slots (as two GPU hosts would have), one
    database, one broker; one build worker."""
    common = {"M2D_HEARTBEAT_SECONDS": 2, "M2D_RECONCILE_SECONDS": 3, "M2D_MAX_RUNNING_PER_RESEARCHER": 0}
    alpha = WorkerPool(smtp_server.port, prefix="hosts-", overrides={**common, "M2D_HOST_NAME": "alpha"}).start()
    beta = WorkerPool(
        smtp_server.port, prefix="hosts-", overrides={**common, "M2D_HOST_NAME": "beta"}, roles=("run",)
    ).start()
    alpha.use(settings)
    yield alpha, beta
    beta.stop()
    alpha.stop()


def test_two_run_workers_share_the_queue_without_overlap(client, two_hosts, make_researcher):
    short = "import time\nprint('start', flush=True)\ntime.sleep(4)\nprint('end', flush=True)\n"
    researchers = [make_researcher(f"h{i}") for i in range(2)]
    ids = [submit(client, researchers[i % 2], short) for i in range(6)]
    done = [wait_finished(sid, timeout=300) for sid in ids]
    assert [s.status for s in done] == ["succeeded"] * 6
    assert {s.slot for s in done} == {"alpha/cpu0", "beta/cpu0"}
    # a slot runs one submission at a time
    for slot in ("alpha/cpu0", "beta/cpu0"):
        spans = []
        for s in done:
            if s.slot == slot:
                events = {e.to_status: e.at for e in s.events.all()}
                spans.append((events["running"], events["succeeded"]))
        spans.sort()
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False)), spans


def test_a_run_host_without_the_image_builds_it_from_the_stored_zip(client, crash_pool, make_researcher):
    """A run slot on another host (here: the image removed from the engine between build and
    run) builds the image itself from the stored zip instead of failing."""
    crash_pool.kill("run")
    sid = submit(client, make_researcher(), "print('ran where it was not built')\n")
    wait_until(lambda: status(sid) == "queued", 120, "the build")
    docker_api.remove_image(Submission.objects.get(pk=sid).image_id)
    crash_pool.restart("run")
    submission = wait_finished(sid, timeout=180)
    assert submission.status == "succeeded", submission.reason
    assert "ran where it was not built" in submission.run_log_tail
    assert (settings.VAR_DIR / "logs" / str(sid) / "build-on-run-host.log").exists()
