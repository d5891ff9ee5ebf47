"""A submission as one plain dictionary, with what its owner may see of its exports: what
`manage.py submit --json` prints and the API returns."""

from submissions.logpolicy import researcher_log_view, researcher_reason
from submissions.models import Submission
from submissions.selectors import submission_timings

from .models import ExportFile
from .selectors import unreleased_summary


def submission_summary(submission: Submission) -> dict:
    export = getattr(submission, "export", None)
    entries = list(export.entries.all()) if export else []
    return {
        "id": submission.pk,
        "status": submission.status,
        "contents_sha256": submission.archive_sha256,
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
        "timings": submission_timings(submission),
    }
