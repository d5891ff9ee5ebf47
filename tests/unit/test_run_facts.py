"""How the facts a run reports are recorded (submissions.services.run_facts_record): the outcome
and its reason, what the researcher will see of the output, the gateway's totals and the exit
budget's charge, on the test database."""

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from submissions.facts import RunFacts, TrackingTotals
from submissions.models import ExitCharge, Submission, SubmissionEvent
from submissions.services import run_facts_record, submission_cancel

S = Submission.Status
TRACEBACK = 'Traceback (most recent call last):\n  File "/opt/submission/main.py", line 3\nValueError: no data'


@pytest.fixture
def running(db, settings):
    settings.M2D_RUN_MEMORY = "3g"
    settings.M2D_RUN_TIMEOUT = 2 * 3600
    settings.M2D_INFRASTRUCTURE_RETRIES = 1
    settings.M2D_LOG_TAIL_LINES = 3
    owner = get_user_model().objects.create_user("facts", "facts@example.org")
    return Submission.objects.create(
        owner=owner, status=S.RUNNING, archive="submissions/x.zip", archive_sha256="0" * 64, slot="h/cpu0"
    )


def facts(submission, **fields) -> RunFacts:
    return RunFacts(submission_id=submission.pk, export_folder=Path("/nowhere"), **fields)


def test_a_run_that_met_its_memory_limit_fails_saying_so(running):
    recorded = run_facts_record(
        facts=facts(
            running,
            exit_code=137,
            oom_killed=True,
            log_tail="epoch 1\n",
            tracking=TrackingTotals(calls=9, refused=1, bytes_sent=1200, bytes_received=300),
        )
    )
    assert (recorded.status, recorded.failure_stage, recorded.exit_code, recorded.oom_killed) == (
        S.FAILED,
        "run",
        137,
        True,
    )
    assert recorded.reason.startswith("out of memory at 3 GiB:")
    assert (recorded.tracking_calls, recorded.tracking_bytes, recorded.tracking_bytes_received) == (9, 1200, 300)
    assert recorded.run_log_tail == "epoch 1"
    assert recorded.is_finished and recorded.finished_at is not None
    assert SubmissionEvent.objects.filter(submission=running, from_status=S.RUNNING, to_status=S.FAILED).count() == 1
    charges = dict(ExitCharge.objects.filter(submission=running).values_list("channel", "bytes"))
    assert charges == {"tracking": 1200, "log": len("epoch 1")}


def test_exit_zero_succeeds(running):
    recorded = run_facts_record(facts=facts(running, exit_code=0, log_tail="done\n"))
    assert (recorded.status, recorded.exit_code, recorded.reason, recorded.oom_killed) == (S.SUCCEEDED, 0, "", False)


def test_a_failed_run_gives_its_traceback_from_the_capped_tail(running):
    output = "\n".join(f"line {n}" for n in range(50)) + "\n" + TRACEBACK
    recorded = run_facts_record(facts=facts(running, exit_code=1, log_tail=output))
    assert recorded.run_log_tail == TRACEBACK  # the last M2D_LOG_TAIL_LINES lines, no more
    assert recorded.reason == "main.py exited with code 1.\n" + TRACEBACK
    assert (recorded.status, recorded.failure_stage) == (S.FAILED, "run")


def test_the_run_time_limit_times_it_out(running):
    recorded = run_facts_record(facts=facts(running, exit_code=137, timed_out=True))
    assert (recorded.status, recorded.failure_stage) == (S.TIMED_OUT, "run")
    assert recorded.reason == "timed_out after 2 h (the run time limit)"


def test_files_that_break_the_export_limits_fail_it_at_stage_export(running):
    recorded = run_facts_record(facts=facts(running, exit_code=0, export_problem="1001 files; the limit is 1000."))
    assert (recorded.status, recorded.failure_stage, recorded.reason) == (
        S.FAILED,
        "export",
        "1001 files; the limit is 1000.",
    )


def test_a_run_the_platform_lost_is_queued_again_then_failed_at_stage_infrastructure(running):
    lost = run_facts_record(facts=facts(running, fault="the engine went away"))
    assert (lost.status, lost.infrastructure_retries, lost.is_finished) == (S.QUEUED, 1, False)
    Submission.objects.filter(pk=running.pk).update(status=S.RUNNING)
    again = run_facts_record(facts=facts(running, fault="the engine went away"))
    assert (again.status, again.failure_stage) == (S.FAILED, "infrastructure")
    assert again.reason == "The platform lost the run: the engine went away"


def test_a_run_cancelled_meanwhile_stays_cancelled(running):
    submission_cancel(by=None, submission=Submission.objects.get(pk=running.pk))
    recorded = run_facts_record(facts=facts(running, exit_code=0))
    assert (recorded.status, recorded.is_finished) == (S.CANCELLED, True)
