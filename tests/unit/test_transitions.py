"""The submission state machine: every allowed move works and records an event; every other
move is refused; a stale expectation loses the race."""

import pytest
from django.contrib.auth import get_user_model

from submissions.models import Submission, SubmissionEvent
from submissions.transitions import ALLOWED, IllegalTransition, TransitionConflict, transition

S = Submission.Status
ALL = [s.value for s in S]


@pytest.fixture
def owner(db):
    return get_user_model().objects.create_user("owner", "owner@example.org")


def _submission(owner, status):
    return Submission.objects.create(owner=owner, status=status, archive="submissions/x.zip", archive_sha256="0" * 64)


def test_every_state_has_a_row():
    assert set(ALLOWED) == set(ALL)
    for finished in Submission.FINISHED:
        assert ALLOWED[finished] == frozenset(), f"{finished} must be final"


@pytest.mark.parametrize("source,target", [(s, t) for s in ALL for t in sorted(ALLOWED[s])])
def test_allowed_moves_update_and_record(owner, source, target):
    submission = _submission(owner, source)
    transition(submission, target, note="because")
    submission.refresh_from_db()
    assert submission.status == target
    event = SubmissionEvent.objects.get(submission=submission)
    assert (event.from_status, event.to_status, event.note) == (source, target, "because")


@pytest.mark.parametrize("source,target", [(s, t) for s in ALL for t in ALL if t not in ALLOWED[s]])
def test_other_moves_are_refused(owner, source, target):
    submission = _submission(owner, source)
    with pytest.raises(IllegalTransition):
        transition(submission, target)
    submission.refresh_from_db()
    assert submission.status == source
    assert not SubmissionEvent.objects.filter(submission=submission).exists()


def test_stale_expectation_loses(owner):
    submission = _submission(owner, S.QUEUED)
    other_copy = Submission.objects.get(pk=submission.pk)
    transition(submission, S.RUNNING, slot="a")
    with pytest.raises(TransitionConflict):
        transition(other_copy, S.RUNNING, slot="b")
    submission.refresh_from_db()
    assert submission.slot == "a"
    assert SubmissionEvent.objects.filter(submission=submission).count() == 1


def test_fields_move_with_the_status(owner):
    submission = _submission(owner, S.RUNNING)
    transition(submission, S.FAILED, failure_stage=Submission.Stage.RUN, reason="main.py exited with code 1.")
    submission.refresh_from_db()
    assert (submission.status, submission.failure_stage) == (S.FAILED, "run")
    assert submission.reason == "main.py exited with code 1."


def test_the_clock_of_a_submission(owner):
    """Its page and the API say how long it took: upload to end, and how long main.py ran."""
    from datetime import timedelta

    submission = _submission(owner, S.QUEUED)
    Submission.objects.filter(pk=submission.pk).update(created_at=submission.created_at - timedelta(seconds=30))
    submission.refresh_from_db()
    assert submission.run_seconds() is None and 30 <= submission.total_seconds() < 40

    transition(submission, S.RUNNING)
    assert submission.started_at is not None and submission.finished_at is None
    Submission.objects.filter(pk=submission.pk).update(started_at=submission.started_at - timedelta(seconds=12))
    submission.refresh_from_db()
    assert 12 <= submission.run_seconds() < 20  # still running: counted to now

    transition(submission, S.SUCCEEDED)
    ended = submission.finished_at
    assert ended is not None and ended >= submission.started_at
    later = ended + timedelta(hours=1)
    assert submission.run_seconds(later) == submission.run_seconds() == (ended - submission.started_at).total_seconds()
    assert submission.total_seconds(later) == (ended - submission.created_at).total_seconds()


def test_a_requeued_run_has_no_run_time_until_it_starts_again(owner):
    submission = _submission(owner, S.QUEUED)
    transition(submission, S.RUNNING)
    assert submission.run_seconds() is not None
    transition(submission, S.QUEUED, note="the platform lost the run; requeued")
    submission.refresh_from_db()
    assert submission.run_seconds() is None
    transition(submission, S.RUNNING)
    assert submission.run_seconds() is not None


def test_durations_read_as_people_write_them():
    from submissions.progress import format_duration

    assert [format_duration(s) for s in (None, 0.04, 0.4, 8, 9.96, 12.4, 59.6, 60, 192, 3600, 7500)] == [
        "", "0 s", "0.4 s", "8 s", "10 s", "12 s", "1 min", "1 min", "3 min 12 s", "1 h", "2 h 05 min"
    ]  # fmt: skip
