"""Reads of the airlock, with who-may-see-what decided here."""

from __future__ import annotations

from django.db.models import Count, Q
from django.http import Http404
from django.urls import reverse

from . import logpolicy
from .models import Export, ExportEvent, ExportFile, RegisteredModel
from .services import download_token


def exports_awaiting_review():
    return (
        Export.objects.filter(status=Export.Status.REQUESTED)
        .select_related("submission__owner")
        .annotate(held=Count("entries", filter=Q(entries__state=ExportFile.State.HELD)))
        .order_by("requested_at")
    )


def export_for_review(user, pk: int) -> Export:
    if not (user.is_active and user.is_staff):
        raise Http404
    try:
        return Export.objects.select_related("submission__owner").get(pk=pk)
    except Export.DoesNotExist as exc:
        raise Http404 from exc


def approvals_by_file(export: Export) -> dict[int, list[str]]:
    """Who approved each held file since the request (the two-person rule's first half)."""
    found: dict[int, list[str]] = {}
    if export.requested_at is None:
        return found
    events = ExportEvent.objects.filter(
        file__export=export, action=ExportEvent.Action.APPROVED, at__gte=export.requested_at
    ).select_related("by")
    for event in events:
        found.setdefault(event.file_id, []).append(event.by.username)
    return found


def download_url(*, user, export: Export, file: ExportFile | None = None) -> str:
    """A fresh signed link for the owner; it expires after M2D_EXPORT_LINK_SECONDS."""
    return reverse("exports:download", args=[download_token(user=user, export=export, file=file)])


def export_panel(user, submission) -> dict:
    """Everything the submission page shows its owner (or an admin) about the export."""
    export = getattr(submission, "export", None)
    is_owner = user.pk == submission.owner_id
    entries = list(export.entries.all()) if export else []
    links = {}
    if export and is_owner:
        for entry in entries:
            if entry.state == ExportFile.State.RELEASED:
                links[entry.pk] = download_url(user=user, export=export, file=entry)
    decisions = {
        event.file_id: event.comment
        for event in ExportEvent.objects.filter(file__in=entries, action__in=ExportEvent.DECISIONS).order_by("at")
    }
    for entry in entries:
        entry.download_link = links.get(entry.pk)
        entry.decision_comment = decisions.get(entry.pk, "")
    attached = {e.path.removesuffix(".log") for e in entries if e.source == ExportFile.Source.LOG}
    requestable_logs = [
        kind for kind in logpolicy.KINDS if kind not in attached and logpolicy.full_log_path(submission, kind).is_file()
    ]
    status = export.status if export else None
    return {
        "submission": submission,
        "export": export,
        "entries": entries,
        "is_owner": is_owner,
        "zip_link": download_url(user=user, export=export) if links else None,
        "can_request": is_owner
        and submission.is_finished
        and status in (None, Export.Status.HELD, Export.Status.REVIEWED)
        and (any(e.state == ExportFile.State.HELD for e in entries) or bool(requestable_logs)),
        "can_cancel": is_owner and status == Export.Status.REQUESTED,
        "requestable_logs": requestable_logs,
        "models": RegisteredModel.objects.filter(submission=submission) if export else [],
        "events": submission.export_events.select_related("by").all(),
    }


def models_of(user):
    return RegisteredModel.objects.filter(owner=user).select_related("submission")
