"""A submission as one plain dictionary: what `manage.py submit --json` prints (and later the API)."""

from exports.logpolicy import researcher_log_view, researcher_reason
from exports.models import ExportFile
from exports.selectors import unreleased_summary

from .models import Submission

S = Submission.Status


def _first_event_time(events, statuses) -> str | None:
    for event in events:
        if event.to_status in statuses:
            return event.at.isoformat()
    return None


def submission_summary(submission: Submission) -> dict:
    events = list(submission.events.all())
    finished = (S.SUCCEEDED, S.FAILED, S.CANCELLED, S.TIMED_OUT)
    build_end = next((e.at.isoformat() for e in events if e.from_status == S.BUILDING), None)
    export = getattr(submission, "export", None)
    entries = list(export.entries.all()) if export else []
    return {
        "id": submission.pk,
        "status": submission.status,
        "failure_stage": submission.failure_stage or None,
        "reason": researcher_reason(submission) or None,
        "exit_code": submission.exit_code,
        "log_tail": (researcher_log_view(submission, "run") or researcher_log_view(submission, "build")).text,
        "metrics": submission.metrics,
        # Names, sizes and hashes of released files only: of the rest, how many and how big.
        "exports": [
            {"path": e.display_path, "size": e.size, "sha256": e.sha256}
            for e in entries
            if e.state == ExportFile.State.RELEASED
        ],
        "exports_unreleased": unreleased_summary(entries).as_dict(),
        "warnings": submission.warnings,
        "duration_seconds": round(submission.total_seconds(), 3),
        "run_seconds": None if (ran := submission.run_seconds()) is None else round(ran, 3),
        "timings": {
            "received": submission.created_at.isoformat(),
            "build_start": _first_event_time(events, (S.BUILDING,)),
            "build_end": build_end,
            "run_start": _first_event_time(events, (S.RUNNING,)),
            "run_end": next(
                (e.at.isoformat() for e in events if e.from_status == S.RUNNING and e.to_status in finished), None
            ),
        },
    }
