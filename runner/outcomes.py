"""How a submission ends, and the words that tell its researcher why."""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.db import transaction

from submissions.models import Submission
from submissions.transitions import TransitionConflict, transition

from .dispatch import wake_run_slots

log = logging.getLogger(__name__)
S = Submission.Status
Stage = Submission.Stage


def settle(submission: Submission, to: str, **fields) -> bool:
    """Move to an outcome unless someone (a cancel, the reconciler) settled it first."""
    try:
        transition(submission, to, **fields)
        return True
    except TransitionConflict:
        submission.refresh_from_db()
        log.info("submission %s was %s before it could become %s", submission.pk, submission.status, to)
        return False


def fail(submission: Submission, stage: str, reason: str, **fields) -> bool:
    return settle(submission, S.FAILED, failure_stage=stage, reason=reason[:4000], note=reason[:500], **fields)


def platform_lost(submission: Submission, reason: str, **fields) -> None:
    """A fault of the platform, not of the code: requeue it (a limited number of times), else fail
    it at stage infrastructure. Neither counts against the researcher."""
    retries = submission.infrastructure_retries
    if retries < settings.M2D_INFRASTRUCTURE_RETRIES:
        if settle(
            submission,
            S.QUEUED,
            infrastructure_retries=retries + 1,
            note=f"{reason}; requeued",
            **{k: v for k, v in fields.items() if k != "metrics"},
        ):
            transaction.on_commit(wake_run_slots)
        return
    fail(submission, Stage.INFRASTRUCTURE, reason, **fields)


def build_reason(error: str, build_log: str) -> str:
    if "pip install -r /opt/submission/requirements.txt" in error or "No matching distribution" in build_log:
        missing = re.findall(r"No matching distribution found for (\S+)", build_log)
        what = f" ({', '.join(sorted(set(missing)))})" if missing else ""
        return (
            f"Installing requirements.txt failed{what}. Check the package names and versions; "
            "the end of the build log shows pip's message."
        )
    return f"The image build failed: {error}"


TRACEBACK = "Traceback (most recent call last):"


def run_reason(exit_code: int, log_tail: str) -> str:
    reason = f"main.py exited with code {exit_code}."
    lines = log_tail.splitlines()
    traceback = last_traceback(lines)
    if traceback:
        reason += "\n" + "\n".join(traceback)
    elif log_tail:
        reason += " The end of its output:\n" + "\n".join(lines[-10:])
    return reason


def last_traceback(lines: list[str]) -> list[str]:
    """The last traceback in the output that ends in its exception line; when processes died
    mid-traceback (a container stops all of them when main.py exits), the last one at all."""
    starts = [i for i, line in enumerate(lines) if line.startswith(TRACEBACK)]
    for start in reversed(starts):
        end = next((i for i in starts if i > start), len(lines))
        for i in range(start + 1, end):
            if lines[i] and not lines[i][0].isspace():  # the exception line: the traceback is whole
                return lines[start : i + 1] if end < len(lines) else lines[start:]
    return lines[starts[-1] :] if starts else []


def duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def size(docker_size: str) -> str:
    units = {"k": "KiB", "m": "MiB", "g": "GiB"}
    number, unit = docker_size[:-1], docker_size[-1:].lower()
    return f"{number} {units[unit]}" if unit in units else f"{docker_size} bytes"
