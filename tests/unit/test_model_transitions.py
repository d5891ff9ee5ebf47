"""A model version's states (modelstore/transitions.py): every allowed move works, every other is
refused, and of two racing retirements exactly one wins."""

import pytest
from django.contrib.auth import get_user_model

from modelstore.models import ModelVersion, RegisteredModel
from modelstore.transitions import ALLOWED, IllegalMove, move
from submissions.models import Submission

V = ModelVersion.State
ALL = [s.value for s in V]


@pytest.fixture
def model(db):
    owner = get_user_model().objects.create_user("model-owner", "owner@example.org")
    Submission.objects.create(owner=owner, status="succeeded", archive="x.zip", archive_sha256="0" * 64)
    return RegisteredModel.objects.create(name="clam-walk", owner=owner, dataset="clam", task="walk")


def _version(model, state):
    number = model.versions.count() + 1
    submission = Submission.objects.get(owner=model.owner)
    return ModelVersion.objects.create(
        model=model, number=number, state=state, submission=submission, created_by=model.owner
    )


def test_every_state_has_a_row_and_retired_is_final():
    assert set(ALLOWED) == set(ALL) and ALLOWED[V.RETIRED] == frozenset()


@pytest.mark.parametrize(("source", "target"), [(s, t) for s in ALL for t in sorted(ALLOWED[s])])
def test_allowed_moves_update(model, source, target):
    version = _version(model, source)
    assert move(version, target, expected=source) is True
    version.refresh_from_db()
    assert version.state == target


@pytest.mark.parametrize(("source", "target"), [(s, t) for s in ALL for t in ALL if t not in ALLOWED[s]])
def test_other_moves_are_refused(model, source, target):
    version = _version(model, source)
    with pytest.raises(IllegalMove):
        move(version, target, expected=source)
    version.refresh_from_db()
    assert version.state == source


def test_a_stale_expectation_loses(model):
    version = _version(model, V.REGISTERED)
    assert move(ModelVersion.objects.get(pk=version.pk), V.RETIRED, expected=V.REGISTERED)
    assert move(version, V.RETIRED, expected=V.REGISTERED) is False
