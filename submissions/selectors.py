from django.shortcuts import get_object_or_404

from .models import Submission


def submissions_visible_to(user):
    """A researcher sees only their own submissions; staff see everything."""
    queryset = Submission.objects.select_related("owner")
    return queryset if user.is_staff else queryset.filter(owner=user)


def submission_for(user, pk: int) -> Submission:
    submission = get_object_or_404(submissions_visible_to(user), pk=pk)
    if submission.owner_id == user.pk:
        submission.owner = user  # one object for one person: what a page reads of it is read once
    return submission
