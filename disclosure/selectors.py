"""Reads of disclosure reports: what the reviewer, the release rule, the owner and the provenance
record are shown."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q

from .models import DisclosureReport
from .verdict import researcher_sentence

HELD_BACK = (DisclosureReport.Verdict.OVER, DisclosureReport.Verdict.UNASSESSED, DisclosureReport.Verdict.PENDING)


def reports_of(submission_id: int) -> list[DisclosureReport]:
    return list(DisclosureReport.objects.filter(submission_id=submission_id))


def assessment_waiting(submission_id: int) -> bool:
    return DisclosureReport.objects.filter(
        submission_id=submission_id, verdict=DisclosureReport.Verdict.PENDING
    ).exists()


def submissions_assessing() -> set[int]:
    """Submissions whose disclosure job is waiting or working: their image and containers stay."""
    pending = DisclosureReport.objects.filter(verdict=DisclosureReport.Verdict.PENDING)
    return set(pending.values_list("submission_id", flat=True))


def submissions_to_assess_again(*, now, grace_seconds: float, lease_seconds: float) -> set[int]:
    """Pending reports whose job message was lost (no job took them within the grace), or whose
    job's worker died (its lease ran out)."""
    lost = Q(started_at__isnull=True, requested_at__lt=now - timedelta(seconds=grace_seconds))
    dead = Q(started_at__lt=now - timedelta(seconds=lease_seconds))
    pending = DisclosureReport.objects.filter(verdict=DisclosureReport.Verdict.PENDING)
    return set(pending.filter(lost | dead).values_list("submission_id", flat=True))


def release_gate(reports: list[DisclosureReport], path: str) -> DisclosureReport | None:
    """The report that makes the release of the export file at `path` need a second admin and a
    written reason (over the threshold, not assessed, or still being assessed), if any."""
    return next((r for r in reports if r.covers(path) and r.needs_second_admin), None)


def owner_view(submission_id: int, shown_paths: set[str] | None) -> list[dict]:
    """What the owner sees: each report's verdict in a sentence. A report is named by its path
    only when the viewer may see that name (`shown_paths`; None = every name)."""
    shown = []
    for number, report in enumerate(reports_of(submission_id), start=1):
        named = shown_paths is None or any(report.covers(p) for p in shown_paths)
        shown.append(
            {
                "what": (
                    f"{report.get_kind_display()} {report.shown_path}"
                    if named
                    else f"{report.get_kind_display()} {number}"
                ),
                "verdict": report.verdict,
                "sentence": researcher_sentence(report.kind, report.verdict, report.attacks),
            }
        )
    return shown


def provenance_entries(submission_id: int, released_paths: set[str]) -> list[dict]:
    """The reports as the provenance record keeps them: figures and verdicts; a path and a model's
    problem only for what was released."""
    entries = []
    for report in reports_of(submission_id):
        named = any(report.covers(p) for p in released_paths)
        entries.append(
            {
                "kind": report.kind,
                "path": report.path if named else None,
                "verdict": report.verdict,
                "summary": report.summary
                if named
                else researcher_sentence(report.kind, report.verdict, report.attacks),
                "attacks": report.attacks,
                "cases": {"train": report.n_train, "held_out": report.n_test},
                "table": {
                    "cells": report.cells,
                    "small_cells": report.small_cells,
                    "dominated_cells": report.dominated_cells,
                    "min_count": report.min_count,
                }
                if report.kind == DisclosureReport.Kind.TABLE and named
                else None,
                "platform_fault": bool(report.fault),
                "thresholds": report.thresholds,
                "requested_at": report.requested_at.isoformat(),
                "finished_at": report.finished_at.isoformat() if report.finished_at else None,
            }
        )
    return entries
