"""A run whose host stopped reporting: adopted by its own slot while the worker may come back,
queued again for any host once M2D_RUN_LOST_SECONDS have passed, and only once."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from runner import reconciler, scheduling
from submissions.models import Submission

S = Submission.Status


@pytest.fixture
def owner(db, settings):
    settings.M2D_HEARTBEAT_SECONDS = 2
    settings.M2D_RUN_LOST_SECONDS = 60
    settings.M2D_INFRASTRUCTURE_RETRIES = 1
    return get_user_model().objects.create_user("lost", "lost@example.org")


def running(owner, silent_for: float, retries: int = 0) -> Submission:
    return Submission.objects.create(
        owner=owner,
        status=S.RUNNING,
        archive="x.zip",
        archive_sha256="0" * 64,
        slot="beta/cpu0",
        heartbeat_at=timezone.now() - timedelta(seconds=silent_for),
        infrastructure_retries=retries,
    )


def test_a_run_silent_past_the_lost_timeout_is_queued_again_as_the_platforms_fault(owner):
    lost = running(owner, silent_for=61)
    reconciler._requeue_lost_runs()
    lost.refresh_from_db()
    assert lost.status == S.QUEUED and lost.infrastructure_retries == 1
    note = lost.events.get(to_status=S.QUEUED).note
    assert "beta" in note and "stopped reporting" in note, note


def test_a_run_only_stale_waits_for_its_own_worker(owner):
    stale = running(owner, silent_for=30)  # three beats missed: its worker adopts it when back
    assert list(scheduling.stale_runs()) == [stale]
    reconciler._requeue_lost_runs()
    stale.refresh_from_db()
    assert stale.status == S.RUNNING and stale.infrastructure_retries == 0


def test_a_run_lost_a_second_time_fails_at_stage_infrastructure(owner):
    again = running(owner, silent_for=61, retries=1)
    reconciler._requeue_lost_runs()
    again.refresh_from_db()
    assert again.status == S.FAILED and again.failure_stage == Submission.Stage.INFRASTRUCTURE
    assert "stopped reporting" in again.reason


def test_a_worker_that_comes_back_first_keeps_its_run(owner):
    lost = running(owner, silent_for=61)
    assert scheduling.take_over(lost)  # its own slot adopts it: the heartbeat is fresh again
    reconciler._requeue_lost_runs()
    lost.refresh_from_db()
    assert lost.status == S.RUNNING


def test_a_host_that_lost_a_run_to_a_fault_leaves_it_to_other_hosts_for_three_heartbeats(owner, settings):
    from submissions.services import run_lost_record

    settings.M2D_MAX_RUNNING_PER_RESEARCHER = 0
    beta, alpha = scheduling.Slot("beta", "cpu0", None), scheduling.Slot("alpha", "cpu0", None)
    submission = running(owner, silent_for=0)
    run_lost_record(submission_id=submission.pk, reason="The platform lost the run: the Docker engine stopped")
    assert scheduling.claim_next(beta) is None  # its engine may be on its way down
    assert scheduling.claim_next(alpha).pk == submission.pk


def test_a_host_alone_takes_back_the_run_it_lost_after_three_heartbeats(owner, settings):
    from submissions.services import run_lost_record

    settings.M2D_MAX_RUNNING_PER_RESEARCHER = 0
    beta = scheduling.Slot("beta", "cpu0", None)
    submission = running(owner, silent_for=0)
    run_lost_record(submission_id=submission.pk, reason="The platform lost the run: the Docker engine stopped")
    submission.events.update(at=timezone.now() - timedelta(seconds=7))
    assert scheduling.claim_next(beta).pk == submission.pk
