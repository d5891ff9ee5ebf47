from django.shortcuts import get_object_or_404

from .models import Submission


def submissions_visible_to(user):
    """A researcher sees only their own submissions; staff see everything."""
    queryset = Submission.objects.select_related("owner")
    return queryset if user.is_staff else queryset.filter(owner=user)


def submission_for(user, pk: int) -> Submission:
    """One submission `user` may see, with what its page shows of it in the same query."""
    submission = get_object_or_404(submissions_visible_to(user).select_related("export", "metric_record"), pk=pk)
    if submission.owner_id == user.pk:
        submission.owner = user  # one object for one person: what a page reads of it is read once
    return submission


# What a row of a list shows (the page and the API): not the log tails, reasons or requirements.
LIST_FIELDS = (
    "id", "owner_id", "status", "failure_stage", "original_name", "created_at", "started_at", "finished_at", "metrics"
)  # fmt: skip


def as_rows(queryset):
    """The submissions of `queryset` with only what a list shows."""
    return queryset.select_related(None).only(*LIST_FIELDS)


def _first_event_time(events, statuses) -> str | None:
    for event in events:
        if event.to_status in statuses:
            return event.at.isoformat()
    return None


def submission_timings(submission: Submission) -> dict:
    """When it was received, built and run (ISO times; None for a step it has not reached)."""
    S = Submission.Status
    events = list(submission.events.all())
    return {
        "received": submission.created_at.isoformat(),
        "build_start": _first_event_time(events, (S.BUILDING,)),
        "build_end": next((e.at.isoformat() for e in events if e.from_status == S.BUILDING), None),
        "run_start": _first_event_time(events, (S.RUNNING,)),
        "run_end": next(
            (e.at.isoformat() for e in events if e.from_status == S.RUNNING and e.to_status in Submission.FINISHED),
            None,
        ),
    }


def submission_cancelled(submission_id: int) -> bool:
    return Submission.objects.filter(pk=submission_id, status=Submission.Status.CANCELLED).exists()
