"""Reads of the airlock, with who-may-see-what decided here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from django.db.models import Count, Q
from django.http import Http404
from django.urls import reverse

from disclosure.selectors import HELD_BACK, owner_view
from submissions import logpolicy

from . import hostlogs
from .downloads import download_token
from .models import Export, ExportEvent, ExportFile


def exports_awaiting_review():
    return (
        Export.objects.filter(status=Export.Status.REQUESTED)
        .select_related("submission__owner")
        .annotate(
            held=Count("entries", filter=Q(entries__state=ExportFile.State.HELD), distinct=True),
            # models and tables whose release takes two admins: over the threshold, or not assessed (yet)
            disclosure_held_back=Count(
                "submission__disclosure_reports",
                filter=Q(submission__disclosure_reports__verdict__in=HELD_BACK),
                distinct=True,
            ),
        )
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


def sees_unreleased_names(user, submission) -> bool:
    """Names, sizes and hashes of files nobody has released are data the run chose: its owner
    sees only how many there are and how big they are together; admins see them to review them."""
    return user.is_active and user.is_staff and user.pk != submission.owner_id


@dataclass(frozen=True)
class Unreleased:
    """What an owner is told of the files of an export that are not released."""

    held: int
    held_bytes: int
    flagged: int  # held files a reviewer will look at twice (how many, not which)
    rejected: int
    expired: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def unreleased_summary(entries) -> Unreleased:
    held = [e for e in entries if e.state == ExportFile.State.HELD]
    return Unreleased(
        held=len(held),
        held_bytes=sum(e.size for e in held),
        flagged=sum(1 for e in held if e.flags),
        rejected=sum(1 for e in entries if e.state == ExportFile.State.REJECTED),
        expired=sum(1 for e in entries if e.state == ExportFile.State.EXPIRED),
    )


def visible_entries(user, submission, entries) -> list:
    if sees_unreleased_names(user, submission):
        return list(entries)
    return [e for e in entries if e.state == ExportFile.State.RELEASED]


def export_panel(user, submission) -> dict:
    """Everything the submission page shows its owner (or an admin) about the export."""
    export = getattr(submission, "export", None)
    is_owner = user.pk == submission.owner_id
    all_entries = list(export.entries.all()) if export else []
    entries = visible_entries(user, submission, all_entries)
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
    attached = {e.path.removesuffix(".log") for e in all_entries if e.source == ExportFile.Source.LOG}
    requestable_logs = [  # asked of the export storage only where the owner may ask for them
        kind
        for kind in logpolicy.KINDS
        if is_owner and submission.is_finished and kind not in attached and hostlogs.available(submission, kind)
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
        and (any(e.state == ExportFile.State.HELD for e in all_entries) or bool(requestable_logs)),
        "can_cancel": is_owner and status == Export.Status.REQUESTED,
        "requestable_logs": requestable_logs,
        "files_held": any(e.state == ExportFile.State.HELD and e.source == ExportFile.Source.RUN for e in all_entries),
        "logs_shown": [e for e in entries if e.source == ExportFile.Source.LOG],
        "events": _trail(user, submission, entries),
        "unreleased": unreleased_summary(all_entries),
        "names_shown": sees_unreleased_names(user, submission),
        "disclosure": owner_view(
            submission.pk,
            None
            if sees_unreleased_names(user, submission)
            else {e.path for e in entries if e.source == ExportFile.Source.RUN},
        ),
    }


def _trail(user, submission, visible) -> list:
    """The airlock's audit trail, without the names of files the viewer may not see."""
    shown = {e.pk for e in visible}
    events = list(submission.export_events.select_related("by__researcher").all())
    if not sees_unreleased_names(user, submission):
        for event in events:
            if event.file_id not in shown and event.action != ExportEvent.Action.LOG_ATTACHED:
                event.path = ""
    return events
