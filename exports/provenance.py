"""The provenance record of a submission: exactly what ran, on what, and what came out.

What ran (pip freeze, digests, layers, the images it grew from) is read from the image right after
its build, before any run: a build has no data set and no export folder mounted, so nothing a run
writes can be in it. The end of the run adds only what the platform knows itself (the GPUs the
engine handed the run, the data set's fingerprint): the file system of a container that ran the
researcher's code is theirs, and is never read for the record. Everything else is read from the
records when the document is asked for.
"""

from __future__ import annotations

import logging

from django.conf import settings

from disclosure.selectors import provenance_entries
from submissions.selectors import submission_timings
from tracking.client import MlflowAdmin, MlflowUnavailable
from tracking.readback import latest_values

from .dataset_index import dataset_index
from .models import ExportEvent, ExportFile, Provenance
from .selectors import unreleased_summary

log = logging.getLogger(__name__)
NOT_DESCRIBED = "the image was not described when it was built"
RUN_PROBLEMS = ("GPUs:", "data set fingerprint:", NOT_DESCRIBED)
FORMAT = "m2d-provenance/1"


def provenance_store_image(*, submission_id: int, facts: dict, problems: list[str]) -> Provenance:
    """Record what the build's image is and holds (runner.provenance reads it from the image)."""
    record, _ = Provenance.objects.update_or_create(
        submission_id=submission_id, defaults={**facts, "problems": problems}
    )
    _warn(submission_id, problems)
    return record


def provenance_store_run(*, submission, gpus: list, problems: list[str]) -> Provenance:
    """Add what the platform knows of the run that just ended: the GPUs the runner says it had,
    and the data set's fingerprint. The build's problems stay; an earlier attempt's run problems go."""
    try:
        dataset_fingerprint = dataset_index().fingerprint
    except Exception as exc:  # recorded as missing, with why; the run's outcome is recorded all the same
        dataset_fingerprint = ""
        problems = [*problems, f"data set fingerprint: {type(exc).__name__}: {exc}"[:500]]
    built = Provenance.objects.filter(submission=submission).first()
    if built is None:
        problems = [*problems, NOT_DESCRIBED]
    kept = [p for p in built.problems if not p.startswith(RUN_PROBLEMS)] if built else []
    record, _ = Provenance.objects.update_or_create(
        submission=submission,
        defaults={"gpus": gpus, "dataset_fingerprint": dataset_fingerprint, "problems": kept + problems},
    )
    _warn(submission.pk, problems)
    return record


def _warn(submission_id: int, problems: list[str]) -> None:
    if problems:
        log.warning("provenance of submission %s is incomplete: %s", submission_id, "; ".join(problems))


def final_metrics(submission) -> tuple[dict, str]:
    """The submission's final metrics, from MLflow when it answers, else as recorded after the run."""
    researcher = getattr(submission.owner, "researcher", None)
    if researcher is not None and researcher.mlflow_experiment_id:
        try:
            runs = MlflowAdmin().submission_runs(researcher.mlflow_experiment_id, submission.pk)
        except MlflowUnavailable as exc:
            log.warning("metrics of submission %s read from the record: %s", submission.pk, exc)
        else:
            return latest_values(runs), "mlflow"
    return dict(submission.metrics), "recorded after the run"


def _outcome(submission) -> dict:
    reason = submission.reason or ""
    return {
        "status": submission.status,
        "failure_stage": submission.failure_stage or None,
        "exit_code": submission.exit_code,
        "oom_killed": submission.oom_killed,
        "timed_out": submission.status == "timed_out",
        "reason": reason.splitlines()[0][:300] if reason else None,
    }


def _exit_channels(submission, export, entries) -> dict:
    """Every way bytes left this run, what went through each, and its budget (settings now)."""
    released = [f for f in entries if f.state == ExportFile.State.RELEASED]
    return {
        "tracking_out": {"bytes": submission.tracking_bytes, "cap": settings.M2D_TRACKING_MAX_BYTES},
        "tracking_in": {
            "bytes": submission.tracking_bytes_received,
            "cap": settings.M2D_TRACKING_MAX_BYTES_IN,
            "answer_cap": settings.M2D_TRACKING_MAX_ANSWER_BYTES,
        },
        "run_log_tail": {
            "bytes": len((submission.run_log_tail or "").encode("utf-8")),
            "cap": settings.M2D_LOG_TAIL_BYTES,
        },
        "exports": {
            "files": len(export.files) if export else 0,
            "bytes": export.total_bytes if export else 0,
            "released_files": len(released),
            "released_bytes": sum(f.size for f in released),
            "cap": settings.M2D_EXPORT_MAX_BYTES,
            "review": "every file, by an admin, before its owner sees its name",
        },
        "researcher_budget_per_day": settings.M2D_EXIT_BYTES_PER_RESEARCHER_PER_DAY,
    }


def provenance_record(submission) -> dict:
    captured = getattr(submission, "provenance", None)
    export = getattr(submission, "export", None)
    timings = submission_timings(submission)
    metrics, metrics_source = final_metrics(submission)
    entries = list(export.entries.all()) if export else []
    released_ids = {f.pk for f in entries if f.state == ExportFile.State.RELEASED or f.source == ExportFile.Source.LOG}
    decisions = submission.export_events.filter(action__in=ExportEvent.DECISIONS + (ExportEvent.Action.REQUESTED,))
    return {
        "format": FORMAT,
        "submission": {"id": submission.pk, "owner": submission.owner.username, "status": submission.status},
        "code": {
            "archive_sha256": submission.archive_sha256,
            "original_name": submission.original_name,
            "requirements_submitted": submission.requirements,
            "requirements_resolved": captured.submission_freeze if captured else None,
            "runtime_packages": captured.runtime_freeze if captured else None,
        },
        "images": {
            "image_id": submission.image_id or (captured.image.get("id") if captured else None),
            "image": captured.image if captured else None,
            "base": captured.base_image if captured else None,
            "runtime": captured.runtime_image if captured else None,
        },
        "dataset": {
            "fingerprint": (captured.dataset_fingerprint if captured else "")
            or (export.dataset_fingerprint if export else None),
        },
        "execution": {
            "slot": submission.slot or None,
            "gpus": captured.gpus if captured else [],
            "started_at": timings["run_start"],
            "ended_at": timings["run_end"],
            "timings": timings,
            **_outcome(submission),
        },
        "metrics": {"final": metrics, "source": metrics_source},
        "tracking": {
            "calls": submission.tracking_calls,
            "bytes": submission.tracking_bytes,
            "bytes_received": submission.tracking_bytes_received,
        },
        "exit_channels": _exit_channels(submission, export, entries),
        "export": {
            "status": export.status if export else None,
            "total_bytes": export.total_bytes if export else 0,
            # Only released files are named: the names of the others are data nobody reviewed.
            "files": [
                {
                    "path": f.display_path,
                    "size": f.size,
                    "sha256": f.sha256,
                    "type": f.kind,
                    "flags": f.flags,
                    "state": f.state,
                }
                for f in entries
                if f.state == ExportFile.State.RELEASED
            ],
            "unreleased": unreleased_summary(entries).as_dict(),
        },
        "review": [
            {
                "action": event.action,
                "by": event.by.username if event.by_id else None,
                "at": event.at.isoformat(),
                "file": (event.path or None) if event.file_id in released_ids or not event.file_id else None,
                "comment": event.comment,
            }
            for event in decisions.select_related("by")
        ],
        "disclosure_risk": provenance_entries(
            submission.pk,
            {f.path for f in entries if f.state == ExportFile.State.RELEASED and f.source == ExportFile.Source.RUN},
        ),
        "capture_problems": captured.problems if captured else ["no provenance was captured for this run"],
    }
