"""Every change in the exports airlock: collect, request, cancel, review, expire, download.

Keyword-only, atomic, audited; files are deleted and mail is sent once the change has committed.
Portal views, the API, the CLI and the periodic sweep all call these.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.template.defaultfilters import pluralize
from django.utils import timezone

from disclosure.selectors import release_gate, reports_of
from disclosure.services import disclosure_assess_again, disclosure_request
from submissions import logpolicy
from submissions.facts import RunFacts
from submissions.models import Submission

from . import audit, hostlogs, notifications, storage, transitions
from .dataset_index import dataset_index
from .errors import ExportRefused, LinkExpired  # noqa: F401 (callers catch them here)
from .inspection import detect_kind, flags_for, preview
from .manifest import build_manifest, file_digest
from .models import Export, ExportEvent, ExportFile
from .provenance import provenance_store_run

log = logging.getLogger(__name__)
A = ExportEvent.Action


def _expiry_from(now):
    return now + timedelta(days=settings.M2D_EXPORT_RETENTION_DAYS)


# --- after the run -------------------------------------------------------------------------------


def run_exports_record(*, facts: RunFacts) -> Export:
    """What a run that has ended leaves to exports: its provenance and what it wrote to /mnt/export."""
    submission = Submission.objects.select_related("owner").get(pk=facts.submission_id)
    hostlogs.keep(submission.pk, "run")  # for the portal, which may be on another host
    provenance_store_run(submission=submission, gpus=list(facts.gpus), problems=list(facts.provenance_problems))
    export = export_collect(submission=submission, folder=facts.export_folder, problem=facts.export_problem)
    try:
        disclosure_request(submission=submission, paths=[f["path"] for f in export.files])
    except Exception:  # the run's result and the review go on without the report; the reviewer sees none
        log.exception("the disclosure assessment of submission %s could not be asked for", submission.pk)
    return export


def export_collect(*, submission, folder: Path, problem: str = "") -> Export:
    """Record what the run wrote: manifest, detected types, reviewer flags, previews. With a
    `problem` (the run broke the export limits) nothing of it is kept, and the trail says why."""
    manifest = build_manifest(folder) if folder.is_dir() and not problem else []
    try:
        index = dataset_index()
    except OSError as exc:
        log.error("the data set index could not be built (%s); exports are not checked against it", exc)
        index = None
    entries = []
    for item in manifest:
        source = folder / item["path"]
        kind = detect_kind(source, item["path"])
        matches = index.matches(item["sha256"]) if index and item["size"] > 0 else []
        flags = flags_for(kind, item["size"], settings.M2D_EXPORT_LARGE_FILE_BYTES, matches)
        entries.append((item, kind, flags, matches, preview(source, kind)))
    try:
        storage.store_run_files(submission.pk, folder, [item["path"] for item in manifest])
    except Exception as exc:  # kept on the host; the reviewer is told
        log.exception("export of submission %s could not be moved to its storage", submission.pk)
        problem = f"The files could not be moved to export storage ({exc}); they are still on the host."
    with transaction.atomic():
        export, _ = Export.objects.update_or_create(
            submission=submission,
            defaults={
                "folder": str(folder),
                "files": manifest,
                "total_bytes": sum(f["size"] for f in manifest),
                "expires_at": _expiry_from(timezone.now()),
                "dataset_fingerprint": index.fingerprint if index else "",
            },
        )
        export.entries.filter(source=ExportFile.Source.RUN).delete()
        ExportFile.objects.bulk_create(
            ExportFile(
                export=export,
                path=item["path"],
                size=item["size"],
                sha256=item["sha256"],
                kind=kind,
                flags=flags,
                dataset_matches=matches[:20],
                preview=shown,
                storage_key=storage.run_file_key(submission.pk, item["path"]),
            )
            for item, kind, flags, matches, shown in entries
        )
        audit.record(
            submission,
            A.COLLECTED,
            comment=problem or f"{len(manifest)} file{pluralize(len(manifest))}",
            mail=False,
        )
    return export


def _export_of(submission) -> Export:
    export, _ = Export.objects.get_or_create(
        submission=submission, defaults={"folder": "", "expires_at": _expiry_from(timezone.now())}
    )
    return export


def _attach_log(export: Export, kind: str, by) -> ExportFile:
    if kind not in logpolicy.KINDS:
        raise ExportRefused(f"There is no {kind!r} log; choose one of: {', '.join(logpolicy.KINDS)}.")
    existing = export.entries.filter(source=ExportFile.Source.LOG, path=f"{kind}.log").first()
    if existing is not None and existing.state in (ExportFile.State.HELD, ExportFile.State.RELEASED):
        return existing
    with hostlogs.local_copy(export.submission, kind) as source:
        if source is None:
            raise ExportRefused(f"Submission {export.submission_id} has no full {kind} log on this platform.")
        if existing is not None:
            existing.delete()
        key = storage.log_key(export.submission_id, kind)
        storage.store_file(key, source)
        size, sha256 = file_digest(source)
        file = ExportFile.objects.create(
            export=export,
            source=ExportFile.Source.LOG,
            path=f"{kind}.log",
            size=size,
            sha256=sha256,
            kind="log",
            flags=[],
            preview=preview(source, "log"),
            storage_key=key,
        )
    audit.record(export.submission, A.LOG_ATTACHED, by=by, file=file, mail=False)
    return file


# --- the researcher's side -----------------------------------------------------------------------


def export_request_release(*, by, submission, justification: str, logs: tuple[str, ...] = ()) -> Export:
    if by.pk != submission.owner_id:
        raise ExportRefused("Only the researcher who submitted the code can ask for its files.")
    if not submission.is_finished:
        raise ExportRefused(f"Submission {submission.pk} is still {submission.status}; ask once it has finished.")
    justification = (justification or "").strip()
    if len(justification) < 10:
        raise ExportRefused("Say in a sentence why you need these files (at least 10 characters).")
    if len(justification) > 2000:
        raise ExportRefused(f"Keep the justification under 2000 characters (it has {len(justification)}).")
    with transaction.atomic():
        export = _export_of(submission)
        export = Export.objects.select_for_update().get(pk=export.pk)
        if export.status == Export.Status.REQUESTED:
            raise ExportRefused("The release is already requested. Cancel the request first to change it.")
        if export.status == Export.Status.EXPIRED:
            raise ExportRefused(f"This export expired on {export.expires_at:%Y-%m-%d}; its files are deleted.")
        for kind in logs:
            _attach_log(export, kind, by)
        if not export.entries.filter(state=ExportFile.State.HELD).exists():
            raise ExportRefused("There is nothing left to release: no file of this export is waiting for review.")
        transitions.move(
            export,
            Export.Status.REQUESTED,
            expected=(Export.Status.HELD, Export.Status.REVIEWED),
            justification=justification,
            requested_at=timezone.now(),
        )
        audit.record(submission, A.REQUESTED, by=by, comment=justification)
    return export


def export_cancel_request(*, by, export: Export) -> Export:
    if by.pk != export.submission.owner_id:
        raise ExportRefused("Only the researcher who asked for the release can cancel it.")
    now = timezone.now()
    with transaction.atomic():
        # Cancelling must not let the export expire before its owner has been warned again.
        earliest = now + timedelta(days=settings.M2D_EXPORT_EXPIRY_WARNING_DAYS)
        moved = transitions.move(
            export,
            Export.Status.HELD,
            expected=Export.Status.REQUESTED,
            expiry_warned_at=None,
            expires_at=max(export.expires_at or now, earliest),
        )
        if not moved:
            raise ExportRefused("There is no open release request to cancel.")
        audit.record(export.submission, A.CANCELLED, by=by)
    export.refresh_from_db()
    return export


# --- the admin's side ----------------------------------------------------------------------------


def _ensure_reviewer(by, export: Export) -> None:
    if by is None or not (by.is_active and by.is_staff):
        raise ExportRefused("Only admins review exports.")
    if by.pk == export.submission.owner_id:
        raise ExportRefused("You cannot review an export of your own submission; another admin must.")
    if export.status != Export.Status.REQUESTED:
        raise ExportRefused(
            f"The export of submission {export.submission_id} is not waiting for review "
            f"({export.get_status_display()})."
        )


def export_assess_again(*, by, export: Export) -> int:
    """An admin asks again for the disclosure reports the platform failed to make (the disclosure
    image was missing, the engine went away); returns how many."""
    if by is None or not (by.is_active and by.is_staff):
        raise ExportRefused("Only admins ask for a disclosure assessment again.")
    if by.pk == export.submission.owner_id:
        raise ExportRefused("You cannot review an export of your own submission; another admin must.")
    with transaction.atomic():
        count = disclosure_assess_again(submission_id=export.submission_id)
        if not count:
            raise ExportRefused("No disclosure report of this export failed because of the platform: nothing to redo.")
        audit.record(
            export.submission, A.DISCLOSURE_AGAIN, by=by, comment=f"{count} report{pluralize(count)}", mail=False
        )
    return count


def export_add_log(*, by, export: Export, kind: str) -> ExportFile:
    """An admin puts the full build or run log into a review, to be released like any file."""
    _ensure_reviewer(by, export)
    with transaction.atomic():
        return _attach_log(export, kind, by)


def export_decide(
    *, by, export: Export, decisions: dict[int, str], seen: dict[int, str], comment: str = ""
) -> dict[str, list[str]]:
    """Release or reject held files. With the two-person rule a release needs a second admin;
    a rejection by one admin is final (the safe direction). Returns the paths per outcome.

    `seen` is what the reviewer's page showed (file id -> sha256): a decision about a file that is
    no longer waiting, or whose bytes are not the ones shown, is refused and nothing changes."""
    comment = (comment or "").strip()
    if not decisions:
        raise ExportRefused("Choose release or reject for at least one file.")
    if set(decisions.values()) - {"release", "reject"}:
        raise ExportRefused("Each decision is either 'release' or 'reject'.")
    if "reject" in decisions.values() and not comment:
        raise ExportRefused("Say why you reject, so the researcher knows what to change.")
    outcome: dict[str, list[str]] = {"released": [], "rejected": [], "approved": []}
    with transaction.atomic():
        export = Export.objects.select_for_update().select_related("submission").get(pk=export.pk)
        _ensure_reviewer(by, export)
        held = {f.pk: f for f in export.entries.filter(state=ExportFile.State.HELD)}
        _ensure_seen(export, held, {pk: seen.get(pk) for pk in decisions}, all_held=False)
        gates = _disclosure_gates(export, [held[pk] for pk, d in decisions.items() if d == "release"], comment)
        now = timezone.now()
        for pk, decision in decisions.items():
            file = held[pk]
            if decision == "reject":
                _set_state(file, ExportFile.State.REJECTED, now)
                audit.record(export.submission, A.REJECTED, by=by, file=file, comment=comment, mail=False)
                transaction.on_commit(lambda key=file.storage_key: storage.delete(key))
                outcome["rejected"].append(file.display_path)
            elif _approve(export, file, by, comment, needed=2 if pk in gates else _approvals_needed()):
                _set_state(file, ExportFile.State.RELEASED, now)
                audit.record(export.submission, A.RELEASED, by=by, file=file, comment=comment, mail=False)
                outcome["released"].append(file.display_path)
            else:
                outcome["approved"].append(file.display_path)
        if not export.entries.filter(state=ExportFile.State.HELD).exists():
            transitions.move(export, Export.Status.REVIEWED, expected=Export.Status.REQUESTED)
        transaction.on_commit(lambda: notifications.review_done(export.pk, by.pk, outcome, comment))
    return outcome


def _ensure_seen(export: Export, held: dict[int, ExportFile], seen: dict[int, str | None], *, all_held: bool) -> None:
    """Refuse unless each file in `seen` is waiting with the bytes the reviewer was shown (and,
    with `all_held`, no other file is waiting)."""
    changes = []
    for pk, sha256 in seen.items():
        file = held.get(pk)
        if file is None:
            gone = export.entries.filter(pk=pk).first()
            changes.append(f"{gone.display_path if gone else f'file {pk}'} is no longer waiting")
        elif file.sha256 != sha256:
            changes.append(f"{file.display_path} is not the file you were shown")
    if all_held:
        changes += [f"{file.display_path} was added" for pk, file in held.items() if pk not in seen]
    if changes:
        raise ExportRefused(
            f"The files waiting for review changed since you opened this page ({'; '.join(changes)}); "
            "reload and review them again."
        )


def _approvals_needed() -> int:
    return 2 if settings.M2D_EXPORT_TWO_PERSON_RULE else 1


def _disclosure_gates(export: Export, releasing: list[ExportFile], comment: str) -> set[int]:
    """The files whose release needs a second admin and a written reason, because the disclosure
    report of their model or table is over the threshold, could not be made, or is not made yet.
    Refuses a release of one of them without a reason."""
    reports = reports_of(export.submission_id)
    gated = {}
    for file in releasing:
        report = release_gate(reports, file.path) if file.source == ExportFile.Source.RUN else None
        if report is not None:
            gated[file.pk] = (file, report)
    if gated and len(comment) < 10:
        file, report = next(iter(gated.values()))
        raise ExportRefused(
            f"{file.display_path}: the disclosure risk of {report.get_kind_display()} {report.shown_path} "
            f"is {report.get_verdict_display()} ({report.summary or 'not assessed yet'}). Its release needs a "
            "second admin and a written reason: say why it may leave all the same (at least 10 characters)."
        )
    return set(gated)


def _approve(export: Export, file: ExportFile, by, comment: str, needed: int) -> bool:
    """Record this admin's approval; True once enough different admins approved since the request."""
    if needed == 1:
        return True
    approvals = ExportEvent.objects.filter(file=file, action=A.APPROVED, at__gte=export.requested_at)
    if approvals.filter(by=by).exists():
        raise ExportRefused(f"You already approved {file.display_path}; a second, different admin must approve it.")
    audit.record(export.submission, A.APPROVED, by=by, file=file, comment=comment, mail=False)
    return approvals.exclude(by=export.submission.owner_id).values("by").distinct().count() >= needed


def _set_state(file: ExportFile, state: str, now) -> None:
    file.state, file.decided_at = state, now
    file.save(update_fields=["state", "decided_at"])


def export_decide_all(
    *, by, export: Export, decision: str, seen: dict[int, str], comment: str = ""
) -> dict[str, list[str]]:
    """Decide every waiting file, provided they are exactly the files the reviewer was shown."""
    with transaction.atomic():
        locked = Export.objects.select_for_update().select_related("submission").get(pk=export.pk)
        _ensure_reviewer(by, locked)
        held = {f.pk: f for f in locked.entries.filter(state=ExportFile.State.HELD)}
        _ensure_seen(locked, held, seen, all_held=True)
        return export_decide(by=by, export=locked, decisions=dict.fromkeys(held, decision), seen=seen, comment=comment)


# --- retention -----------------------------------------------------------------------------------


def export_expire_due(*, now=None) -> dict[str, int]:
    """Warn owners of unrequested exports that are about to expire; delete those that have."""
    now = now or timezone.now()
    counts = {"warned": 0, "expired": 0}
    held = Export.objects.filter(status=Export.Status.HELD, entries__state=ExportFile.State.HELD).distinct()
    for export in held.filter(expires_at__lte=now).select_related("submission"):
        with transaction.atomic():
            if not transitions.move(export, Export.Status.EXPIRED, expected=Export.Status.HELD):
                continue  # requested meanwhile
            for file in export.entries.filter(state=ExportFile.State.HELD):
                _set_state(file, ExportFile.State.EXPIRED, now)
                transaction.on_commit(lambda key=file.storage_key: storage.delete(key))
            audit.record(
                export.submission, A.EXPIRED, comment=f"retention of {settings.M2D_EXPORT_RETENTION_DAYS:g} days"
            )
        counts["expired"] += 1
    warn_before = now + timedelta(days=settings.M2D_EXPORT_EXPIRY_WARNING_DAYS)
    for export in held.filter(expires_at__lte=warn_before, expires_at__gt=now, expiry_warned_at__isnull=True):
        with transaction.atomic():
            if Export.objects.filter(pk=export.pk, expiry_warned_at__isnull=True).update(expiry_warned_at=now):
                audit.record(export.submission, A.EXPIRY_WARNED, comment=f"expires {export.expires_at:%Y-%m-%d %H:%M}")
                counts["warned"] += 1
    return counts
