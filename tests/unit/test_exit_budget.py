"""The exit budget's accounting (submissions/exits.py): reservations, settlements, the 24-hour
window and the log tail, on the test database."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from submissions import exits
from submissions.models import ExitCharge, Submission


@pytest.fixture
def owner(db, settings):
    settings.M2D_EXIT_BYTES_PER_RESEARCHER_PER_DAY = 100_000
    settings.M2D_TRACKING_MAX_BYTES = 60_000
    return get_user_model().objects.create_user("budget-owner", "owner@example.org")


def _submission(owner, **fields):
    return Submission.objects.create(
        owner=owner, status="running", archive="submissions/x.zip", archive_sha256="0" * 64, **fields
    )


def test_running_runs_hold_their_allowance_so_two_cannot_spend_the_same_bytes(owner):
    first = exits.reserve_tracking(_submission(owner))
    second = exits.reserve_tracking(_submission(owner))
    third = exits.reserve_tracking(_submission(owner))
    assert (first.total, first.limited_by_budget) == (60_000, False)
    assert (second.total, second.limited_by_budget) == (40_000, True)
    assert third.total == 0
    assert exits.budget_of(owner).remaining == 0


def test_a_settled_run_gives_back_what_it_did_not_use(owner):
    submission = _submission(owner)
    exits.reserve_tracking(submission)
    exits.settle_tracking(submission.pk, owner.pk, 5_000)
    assert exits.budget_of(owner).used == 5_000
    assert exits.reserve_tracking(_submission(owner)).total == 60_000


def test_a_later_attempt_goes_on_from_what_the_submission_used(owner):
    submission = _submission(owner, tracking_bytes=50_000)
    again = exits.reserve_tracking(submission)
    assert (again.used, again.total) == (50_000, 60_000)
    assert exits.budget_of(owner).used == 60_000  # the same charge, not a second one


def test_charges_age_out_after_24_hours(owner):
    old = _submission(owner)
    exits.settle_tracking(old.pk, owner.pk, 90_000)
    assert exits.budget_of(owner).remaining == 10_000
    ExitCharge.objects.filter(submission=old).update(at=timezone.now() - timedelta(hours=24, minutes=1))
    assert exits.budget_of(owner).remaining == 100_000


def test_the_log_tail_shows_what_the_budget_has_left_keeping_its_end(owner):
    spender = _submission(owner)
    exits.settle_tracking(spender.pk, owner.pk, 99_990)
    submission = _submission(owner)
    shown = exits.charge_log_tail(submission, "first line\nTraceback: the error\n")
    assert shown == "the error\n"
    assert exits.budget_of(owner).remaining == 0
    # Charged once per submission: its final tail replaces an earlier attempt's.
    assert exits.charge_log_tail(submission, "again\n") == "again\n"
    assert ExitCharge.objects.get(submission=submission, channel="log").bytes == 6


def test_budgets_are_per_researcher(owner):
    other = get_user_model().objects.create_user("other", "other@example.org")
    exits.settle_tracking(_submission(owner).pk, owner.pk, 100_000)
    assert exits.budget_of(other).remaining == 100_000
    assert exits.reserve_tracking(_submission(other)).total == 60_000


def test_an_allowance_held_by_a_run_that_ended_elsewhere_is_not_held_forever(owner):
    lost = _submission(owner)
    exits.reserve_tracking(lost)  # its worker died; the reconciler settled it as a platform fault
    Submission.objects.filter(pk=lost.pk).update(status="failed")
    ExitCharge.objects.filter(submission=lost).update(at=timezone.now() - timedelta(days=2))
    assert exits.budget_of(owner).remaining == 100_000
