"""The one place a submission changes state.

Every move is a conditional UPDATE (`... WHERE status = <expected>`), so two workers can never both
move the same submission; the winner records an event, and the e-mail for the new state is sent
once the transaction commits.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from . import notifications
from .models import Submission, SubmissionEvent

S = Submission.Status

ALLOWED: dict[str, frozenset[str]] = {
    S.RECEIVED: frozenset({S.BUILDING, S.FAILED, S.CANCELLED}),
    # back to received: a build interrupted by a platform crash is retried
    S.BUILDING: frozenset({S.QUEUED, S.FAILED, S.CANCELLED, S.TIMED_OUT, S.RECEIVED}),
    S.QUEUED: frozenset({S.RUNNING, S.FAILED, S.CANCELLED}),
    # back to queued: a run lost to a platform fault is requeued once
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED, S.TIMED_OUT, S.QUEUED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.TIMED_OUT: frozenset(),
}


class IllegalTransition(ValueError):
    pass


class TransitionConflict(RuntimeError):
    """The submission was not in the expected state any more: someone else moved it first."""


def transition(submission: Submission, to: str, *, expected: str | None = None, note: str = "", **fields) -> Submission:
    """Move `submission` from `expected` (default: its current in-memory status) to `to`."""
    source = expected or submission.status
    if to not in ALLOWED[source]:
        raise IllegalTransition(f"a submission cannot go from {source} to {to}")
    if to == S.RUNNING:
        fields.setdefault("started_at", timezone.now())
    elif to in Submission.FINISHED:
        fields.setdefault("finished_at", timezone.now())
    with transaction.atomic():
        updated = Submission.objects.filter(pk=submission.pk, status=source).update(status=to, **fields)
        if not updated:
            raise TransitionConflict(f"submission {submission.pk} is no longer {source}")
        SubmissionEvent.objects.create(submission_id=submission.pk, from_status=source, to_status=to, note=note)
        submission.refresh_from_db()
        transaction.on_commit(lambda: notifications.status_changed(submission.pk, to))
    return submission
