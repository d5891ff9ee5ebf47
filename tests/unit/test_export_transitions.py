"""The export review state machine (exports/transitions.py): every allowed move works, every other
is refused, and a stale expectation loses the race."""

import pytest
from django.contrib.auth import get_user_model

from exports.models import Export
from exports.transitions import ALLOWED, IllegalMove, move
from submissions.models import Submission

E = Export.Status
ALL = [s.value for s in E]


@pytest.fixture
def submission(db):
    owner = get_user_model().objects.create_user("export-owner", "owner@example.org")
    return Submission.objects.create(owner=owner, status="succeeded", archive="x.zip", archive_sha256="0" * 64)


def _export(submission, status):
    return Export.objects.create(submission=submission, folder="", status=status)


def test_every_state_has_a_row_and_expired_is_final():
    assert set(ALLOWED) == set(ALL) and ALLOWED[E.EXPIRED] == frozenset()


@pytest.mark.parametrize(("source", "target"), [(s, t) for s in ALL for t in sorted(ALLOWED[s])])
def test_allowed_moves_update(submission, source, target):
    export = _export(submission, source)
    assert move(export, target, expected=source) is True
    export.refresh_from_db()
    assert export.status == target


@pytest.mark.parametrize(("source", "target"), [(s, t) for s in ALL for t in ALL if t not in ALLOWED[s]])
def test_other_moves_are_refused(submission, source, target):
    export = _export(submission, source)
    with pytest.raises(IllegalMove):
        move(export, target, expected=source)
    export.refresh_from_db()
    assert export.status == source


def test_a_stale_expectation_loses(submission):
    export = _export(submission, E.REQUESTED)
    assert move(Export.objects.get(pk=export.pk), E.HELD, expected=E.REQUESTED)  # the researcher cancels
    assert move(export, E.REVIEWED, expected=E.REQUESTED) is False  # the reviewer's page was older
    export.refresh_from_db()
    assert export.status == E.HELD
