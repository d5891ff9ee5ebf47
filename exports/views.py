import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.second_factor import staff_second_factor
from disclosure.selectors import release_gate, reports_of
from submissions import logpolicy
from submissions.selectors import submission_for

from . import audit, downloads, fileview, hostlogs, selectors, services, storage
from .errors import LinkExpired
from .models import ExportEvent, ExportFile
from .provenance import provenance_record


def _staff(request) -> None:
    if not (request.user.is_active and request.user.is_staff):
        raise Http404  # researchers are not told that admin pages exist


def _refused(request, message: str, status: int = 403):
    return render(request, "exports/refused.html", {"message": message}, status=status)


# --- researcher ----------------------------------------------------------------------------------


@login_required
@require_POST
def request_release(request, submission_id: int):
    submission = submission_for(request.user, submission_id)
    logs = tuple(kind for kind in logpolicy.KINDS if request.POST.get(f"log-{kind}"))
    try:
        services.export_request_release(
            by=request.user, submission=submission, justification=request.POST.get("justification", ""), logs=logs
        )
    except services.ExportRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Release requested. An admin will review the files; you will get an e-mail.")
    return redirect("submissions:detail", pk=submission.pk)


@login_required
@require_POST
def cancel_request(request, submission_id: int):
    submission = submission_for(request.user, submission_id)
    try:
        export = getattr(submission, "export", None)
        if export is None:
            raise services.ExportRefused("There is no open release request to cancel.")
        services.export_cancel_request(by=request.user, export=export)
    except services.ExportRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Release request cancelled.")
    return redirect("submissions:detail", pk=submission.pk)


@login_required
def download(request, token: str):
    try:
        found = downloads.download_open(by=request.user, token=token)
    except LinkExpired as exc:
        return _refused(request, str(exc), status=410)
    except services.ExportRefused as exc:
        return _refused(request, str(exc), status=403)
    if storage.is_local():
        return FileResponse(storage.open_file(found.key), as_attachment=True, filename=found.filename)
    return HttpResponseRedirect(storage.presigned_url(found.key, found.filename))


@login_required
def provenance(request, submission_id: int):
    submission = submission_for(request.user, submission_id)  # owner or admin
    record = provenance_record(submission)
    audit.record(submission, ExportEvent.Action.PROVENANCE_READ, by=request.user, mail=False)
    response = HttpResponse(json.dumps(record, indent=2, sort_keys=False), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="submission-{submission.pk}-provenance.json"'
    return response


# --- admin ---------------------------------------------------------------------------------------


@login_required
@staff_second_factor
def review_queue(request):
    _staff(request)
    return render(request, "exports/review_queue.html", {"exports": selectors.exports_awaiting_review()})


@login_required
@staff_second_factor
def review(request, pk: int):
    _staff(request)
    export = selectors.export_for_review(request.user, pk)
    if request.method == "POST":
        action, comment = request.POST.get("action", ""), request.POST.get("comment", "")
        seen = _numbered(request.POST, "seen-")  # the files the page showed: id -> sha256
        try:
            if action in ("release_all", "reject_all"):
                decision = action.removesuffix("_all")
                outcome = services.export_decide_all(
                    by=request.user, export=export, decision=decision, seen=seen, comment=comment
                )
            else:
                decisions = {pk: value for pk, value in _numbered(request.POST, "decision-").items() if value}
                outcome = services.export_decide(
                    by=request.user, export=export, decisions=decisions, seen=seen, comment=comment
                )
        except services.ExportRefused as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _outcome_message(outcome))
            return redirect("exports:review", pk=export.pk)
    export.refresh_from_db()
    submission = export.submission
    entries = list(export.entries.all())
    reports = reports_of(submission.pk)
    for entry in entries:
        entry.disclosure = [r for r in reports if entry.source == ExportFile.Source.RUN and r.covers(entry.path)]
        entry.disclosure_gate = release_gate(entry.disclosure, entry.path)
    context = {
        "export": export,
        "submission": submission,
        "entries": entries,
        "flag_counts": _flag_counts(entries),
        "disclosure_reports": reports,
        "platform_failed": any(r.verdict == r.Verdict.UNASSESSED and r.fault for r in reports),
        "approvals": selectors.approvals_by_file(export),
        "events": submission.export_events.select_related("by"),
        "logs": [k for k in logpolicy.KINDS if hostlogs.available(submission, k)],
        "own_export": request.user.pk == submission.owner_id,
        "comment": request.POST.get("comment", ""),
        "rule_text": (
            "Two-person rule: each release needs two different admins, neither of them the researcher."
            if settings.M2D_EXPORT_TWO_PERSON_RULE
            else "One admin's decision releases or rejects a file."
        ),
    }
    return render(request, "exports/review.html", context, status=400 if request.method == "POST" else 200)


def _numbered(form, prefix: str) -> dict[int, str]:
    """The fields named prefix<file id>, by file id."""
    return {
        int(key.removeprefix(prefix)): value
        for key, value in form.items()
        if key.startswith(prefix) and key.removeprefix(prefix).isdigit()
    }


def _flag_counts(entries) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for entry in entries:
        for label in entry.flag_labels():
            counts[label] = counts.get(label, 0) + 1
    return sorted(counts.items())


def _outcome_message(outcome: dict[str, list[str]]) -> str:
    parts = [f"{len(paths)} {what}" for what, paths in outcome.items() if paths]
    waiting = " (waiting for a second admin)" if outcome["approved"] else ""
    return "Done: " + ", ".join(parts) + waiting + "."


@login_required
@require_POST
@staff_second_factor
def add_log(request, pk: int):
    _staff(request)
    export = selectors.export_for_review(request.user, pk)
    try:
        services.export_add_log(by=request.user, export=export, kind=request.POST.get("kind", ""))
    except services.ExportRefused as exc:
        messages.error(request, str(exc))
    return redirect("exports:review", pk=export.pk)


@login_required
@require_POST
@staff_second_factor
def assess_again(request, pk: int):
    _staff(request)
    export = selectors.export_for_review(request.user, pk)
    try:
        count = services.export_assess_again(by=request.user, export=export)
    except services.ExportRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Disclosure risk: {count} report{'s' if count != 1 else ''} asked for again.")
    return redirect("exports:review", pk=export.pk)


@login_required
@staff_second_factor
def full_log(request, submission_id: int, kind: str):
    _staff(request)
    submission = submission_for(request.user, submission_id)
    if request.user.pk == submission.owner_id:
        return _refused(request, "This is the log of your own submission: ask for it with a release request.")
    whole = hostlogs.open_log(submission, kind) if kind in logpolicy.KINDS else None
    if whole is None:
        raise Http404
    audit.record(submission, ExportEvent.Action.LOG_READ, by=request.user, comment=f"{kind} log", mail=False)
    return FileResponse(whole, content_type="text/plain; charset=utf-8")


@login_required
@staff_second_factor
def file_whole(request, pk: int, file_id: int):
    """One export file whole, a page at a time, for the reviewer who must not rely on the preview."""
    _staff(request)
    export = selectors.export_for_review(request.user, pk)
    file = get_object_or_404(export.entries, pk=file_id)
    if request.user.pk == export.submission.owner_id:
        return _refused(request, "These are the files of your own submission: another admin reviews them.")
    if file.state in (ExportFile.State.REJECTED, ExportFile.State.EXPIRED):
        return _refused(request, f"{file.display_path} was {file.get_state_display()}; its bytes are deleted.", 410)
    number = request.GET.get("page", "1")
    try:
        page = fileview.read_page(file, int(number) if number.isdigit() else 1)
    except OSError as exc:
        return _refused(request, f"{file.display_path} could not be read from export storage ({exc}).", 503)
    if file.source == ExportFile.Source.LOG:
        comment = f"bytes {page.start:,}–{page.end:,} of {file.size:,}"
        audit.record(
            export.submission, ExportEvent.Action.LOG_READ, by=request.user, file=file, comment=comment, mail=False
        )
    return render(request, "exports/review_file.html", {"export": export, "file": file, "page": page})
