from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from .forms import UploadForm
from .selectors import submission_for, submissions_visible_to
from .services import SubmissionRefused, ensure_may_submit, submission_create


@login_required
def submission_list(request):
    submissions = submissions_visible_to(request.user).filter(owner=request.user)[:200]
    return render(request, "submissions/list.html", {"submissions": submissions})


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
            messages.success(request, f"Submission {submission.pk} received. We are building it now.")
            return redirect("submissions:detail", pk=submission.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "submissions/upload.html", {"form": form, "refusal": refusal}, status=status)


@login_required
def submission_detail(request, pk: int):
    submission = submission_for(request.user, pk)
    export = getattr(submission, "export", None)
    return render(
        request,
        "submissions/detail.html",
        {
            "submission": submission,
            "events": submission.events.all(),
            "export": export,
        },
    )
