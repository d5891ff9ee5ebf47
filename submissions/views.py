from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.second_factor import staff_second_factor
from submissions.metrics import metric_history

from . import exits
from .charts import line_charts
from .dashboard import admin_dashboard as dashboard
from .forms import UploadForm
from .progress import QueueView, humanize_seconds
from .selectors import as_rows, submission_for, submissions_visible_to
from .services import SubmissionRefused, ensure_may_submit, submission_cancel, submission_create

# Rows per page of "My submissions": a page renders in a few milliseconds however many there are.
LIST_PAGE_SIZE = 50


@login_required
def submission_list(request):
    page = Paginator(as_rows(submissions_visible_to(request.user).filter(owner=request.user)), LIST_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    queue, now = QueueView(), timezone.now()
    # Each row's text is made here with plain string formatting: it is what a page of many rows
    # costs (Django's floatformat and date filters take ten times longer).
    for submission in page:
        submission.queue_position = queue.position(submission)
        submission.wait = humanize_seconds(queue.estimated_wait_seconds(submission))
        submission.took = submission.total_seconds(now)
        submission.ran = submission.run_seconds(now)
        submission.received = timezone.localtime(submission.created_at).strftime("%Y-%m-%d %H:%M")
        submission.metrics_shown = [(key, f"{value:.4g}") for key, value in submission.metrics.items()]
    refresh = any(not submission.is_finished for submission in page)  # while one moves, the page follows it
    return render(request, "submissions/list.html", {"submissions": page, "page": page, "refresh": refresh})


@login_required
def submission_upload(request):
    form = UploadForm(request.POST or None, request.FILES or None)
    refusal = None
    try:
        ensure_may_submit(request.user)
    except SubmissionRefused as exc:
        refusal = str(exc)
    if request.method == "POST" and refusal is None and form.is_valid():
        upload = form.cleaned_data["archive"]
        try:
            submission = submission_create(by=request.user, upload=upload, filename=upload.name)
        except SubmissionRefused as exc:
            form.add_error("archive", str(exc))
        else:
            messages.success(request, f"Submission {submission.pk} received. This page follows it as it runs.")
            return redirect("submissions:detail", pk=submission.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "submissions/upload.html", {"form": form, "refusal": refusal}, status=status)


def _timeline(submission, now) -> list:
    """The events, each with how long the submission stayed in that state."""
    events = list(submission.events.all())
    for event, following in zip(events, [*events[1:], None], strict=False):
        end = following.at if following is not None else (None if submission.is_finished else now)
        event.lasted = (end - event.at).total_seconds() if end is not None else None
    return events


def _live_context(request, submission) -> dict:
    queue, now = QueueView(), timezone.now()
    history, available = metric_history(submission) if submission.status != "received" else ({}, True)
    return {
        "submission": submission,
        "events": _timeline(submission, now),
        "took": submission.total_seconds(now),
        "ran": submission.run_seconds(now),
        "queue_position": queue.position(submission),
        "wait": humanize_seconds(queue.estimated_wait_seconds(submission)),
        "charts": line_charts(history),
        "history_available": available,
        "can_cancel": not submission.is_finished and (request.user.is_staff or request.user.pk == submission.owner_id),
        "exit_budget": exits.budget_of(request.user) if request.user.pk == submission.owner_id else None,
    }


@login_required
def submission_detail(request, pk: int):
    submission = submission_for(request.user, pk)
    return render(request, "submissions/detail.html", _live_context(request, submission))


@login_required
def submission_live(request, pk: int):
    """The part of the detail page that changes, for the page to fetch while the job goes on."""
    submission = submission_for(request.user, pk)
    response = render(request, "submissions/partials/live.html", _live_context(request, submission))
    response["X-M2D-Finished"] = "1" if submission.is_finished else "0"
    response["Cache-Control"] = "no-store"
    return response


@login_required
@staff_second_factor
def admin_dashboard(request):
    if not (request.user.is_active and request.user.is_staff):
        raise Http404
    return render(request, "submissions/dashboard.html", dashboard())


@login_required
@require_POST
def submission_cancel_view(request, pk: int):
    submission = submission_for(request.user, pk)
    try:
        submission_cancel(by=request.user, submission=submission)
    except SubmissionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Submission {submission.pk} cancelled.")
    return redirect("submissions:detail", pk=submission.pk)
