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
