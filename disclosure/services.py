"""Every change of a disclosure report: asked for when a run's exports are recorded, settled with
the runner's facts. Keyword-only and atomic; the job is sent once the request has committed."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from runner import dispatch

from . import verdict
from .facts import ModelAssessment, TableCheck
from .models import DisclosureReport

log = logging.getLogger(__name__)
V = DisclosureReport.Verdict
MODEL_CARDS = ("m2d-model.json", "MLmodel")  # the predict contract's card, or an MLflow pyfunc
TABLE_SUFFIXES = (".csv", ".tsv")
# A folder where the run's code finalised ACRO's outputs (ACRO.finalise(path, "json")): its
# results.json beside the checksum ACRO writes of it. Each other file there is one of ACRO's outputs.
ACRO_RESULTS = "results.json"
ACRO_SIGNATURE = "checksums/results.json.txt"
ACRO_BOOKKEEPING = ("results.json", "config.json")

# The one table of moves: a report is settled once, but one the platform failed to make may be asked
# for again; a requeued run asks afresh (a new set of reports).
ALLOWED: dict[str, frozenset[str]] = {
    V.PENDING: frozenset({V.CLEAR, V.OVER, V.UNASSESSED, V.NOT_APPLICABLE}),
    V.CLEAR: frozenset(),
    V.OVER: frozenset(),
    V.UNASSESSED: frozenset({V.PENDING}),  # assessed again, after the platform failed
    V.NOT_APPLICABLE: frozenset(),
}


class IllegalMove(ValueError):
    pass


def candidates(paths: list[str]) -> tuple[list[str], list[str]]:
    """The model folders (those holding a model card, "" for the top of the export) and the
    tabular files among the paths a run wrote."""
    folders = sorted(
        {
            "" if str(PurePosixPath(p).parent) == "." else f"{PurePosixPath(p).parent}/"
            for p in paths
            if PurePosixPath(p).name in MODEL_CARDS
        }
    )
    acro = set(acro_folders(paths))

    def acro_output(path: str) -> bool:
        return parent_folder(path) in acro and PurePosixPath(path).name not in ACRO_BOOKKEEPING

    tables = sorted(p for p in paths if p.lower().endswith(TABLE_SUFFIXES) or acro_output(p))
    return folders, tables


def acro_folders(paths) -> list[str]:
    """The folders (with their trailing slash, "" for the top of the export) holding ACRO's results."""
    present = set(paths)
    return sorted(
        {
            parent_folder(p)
            for p in present
            if PurePosixPath(p).name == ACRO_RESULTS and f"{parent_folder(p)}{ACRO_SIGNATURE}" in present
        }
    )


def parent_folder(path: str) -> str:
    """The folder a path lies in, with its trailing slash ("" for the top of the export)."""
    parent = str(PurePosixPath(path).parent)
    return "" if parent == "." else f"{parent}/"


def disclosure_request(*, submission, paths: list[str]) -> list[DisclosureReport]:
    """Ask for the assessment of what a run wrote; the reports of an earlier attempt go. Nothing
    to assess, or assessment switched off: no job."""
    folders, tables = candidates(paths) if settings.M2D_DISCLOSURE_ENABLED else ([], [])
    with transaction.atomic():
        DisclosureReport.objects.filter(submission=submission).delete()
        reports = DisclosureReport.objects.bulk_create(
            [DisclosureReport(submission=submission, kind=DisclosureReport.Kind.MODEL, path=f) for f in folders]
            + [DisclosureReport(submission=submission, kind=DisclosureReport.Kind.TABLE, path=t) for t in tables]
        )
        if reports:
            transaction.on_commit(lambda: dispatch.assess_disclosure(submission.pk))
    return reports


def disclosure_claim(*, submission_id: int) -> list[DisclosureReport]:
    """The pending reports a job may work on now: those no job took, or whose job has been gone
    longer than the lease (its worker died). Two messages for one submission: one job works."""
    now = timezone.now()
    free = DisclosureReport.objects.filter(submission_id=submission_id, verdict=V.PENDING).filter(
        Q(started_at__isnull=True) | Q(started_at__lt=now - timedelta(seconds=settings.M2D_DISCLOSURE_LEASE_SECONDS))
    )
    with transaction.atomic():
        claimed = list(free.select_for_update())
        DisclosureReport.objects.filter(pk__in=[r.pk for r in claimed]).update(started_at=now)
    return claimed


def disclosure_assess_again(*, submission_id: int) -> int:
    """Ask again for the reports the platform failed to make (not those of a model that failed:
    that is the model's answer). Returns how many; the job is sent once this has committed."""
    if V.PENDING not in ALLOWED[V.UNASSESSED]:
        raise IllegalMove("a report that could not be assessed cannot be asked for again")
    with transaction.atomic():
        again = (
            DisclosureReport.objects.filter(submission_id=submission_id, verdict=V.UNASSESSED)
            .exclude(fault="")
            .update(
                verdict=V.PENDING,
                summary="",
                fault="",
                detail="",
                requested_at=timezone.now(),
                started_at=None,
                finished_at=None,
            )
        )
        if again:
            transaction.on_commit(lambda: dispatch.assess_disclosure(submission_id))
    return again


def _settle(report: DisclosureReport, to: str, **fields) -> bool:
    """Move a pending report to its verdict; False when it was settled already (a redelivered job)."""
    if to not in ALLOWED[V.PENDING]:
        raise IllegalMove(f"a disclosure report cannot go from pending to {to}")
    moved = DisclosureReport.objects.filter(pk=report.pk, verdict=V.PENDING).update(
        verdict=to, finished_at=timezone.now(), **fields
    )
    if moved:
        report.refresh_from_db()
    return bool(moved)


def disclosure_record_model(*, report: DisclosureReport, assessment: ModelAssessment) -> bool:
    limits = verdict.thresholds()
    to, summary = verdict.model_verdict(assessment, limits)
    return _settle(
        report,
        to,
        summary=summary,
        attacks=[
            {
                "attack": a.attack,
                "auc": a.auc,
                "auc_low": a.auc_low,
                "auc_high": a.auc_high,
                "advantage": a.advantage,
                "p_value": a.p_value,
            }
            for a in assessment.attacks
        ],
        n_train=assessment.n_train,
        n_test=assessment.n_test,
        problem=assessment.model_problem[:4000],
        fault=assessment.fault[:4000],
        thresholds=limits.as_dict(),
        seconds=assessment.seconds,
    )


def disclosure_record_table(*, report: DisclosureReport, check: TableCheck, seconds: float = 0.0) -> bool:
    to, summary = verdict.table_verdict(check)
    return _settle(
        report,
        to,
        summary=summary,
        cells=check.cells,
        small_cells=check.small_cells,
        dominated_cells=check.dominated_cells,
        min_count=check.min_count,
        detail=check.detail[:4000],
        fault=check.fault[:4000],
        thresholds=verdict.thresholds().as_dict(),
        seconds=seconds,
    )


def disclosure_record_fault(*, submission_id: int, fault: str) -> int:
    """The platform could not assess: every report still pending says so (never the model's fault);
    their release then takes the two-admin path. Returns how many it settled."""
    count = 0
    for report in DisclosureReport.objects.filter(submission_id=submission_id, verdict=V.PENDING):
        summary = f"could not be assessed: the platform failed ({fault}); this says nothing about the model"
        count += _settle(report, V.UNASSESSED, summary=summary, fault=fault[:4000])
    if count:
        log.warning("submission %s: %s disclosure report(s) not assessed: %s", submission_id, count, fault)
    return count
