"""How a submission ends, and the words that tell its researcher why."""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.db import transaction

from submissions.models import Submission
from submissions.transitions import TransitionConflict, transition

from .dispatch import wake_run_slots
from .export_volume import human_size

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


INSTALL_STEP = "install-requirements"
MISSING_PACKAGE = re.compile(
    r"No matching distribution found for (\S+)"  # pip
    r"|Because (\S+) was not found in the package registry"  # uv
    r"|there is no version of (\S+?)(?:,| and )"  # uv, a version that does not exist
)
STEP_EXIT = re.compile(r"returned a non-zero code: (\d+)")


def build_reason(error: str, build_log: str) -> str:
    """The researcher's words for a failed build: a limit it met, by name, or what pip/uv said."""
    code = int(match.group(1)) if (match := STEP_EXIT.search(error)) else None
    if "(M2D_BUILD_MAX_BYTES)" in error:
        return f"The build was stopped: {error}. Install less, or ask an admin about the limit."
    killed = ("exit status: 137", "signal: 9 ", "SIGKILL", "exit code: -9")
    if code == 137 or any(word in build_log for word in killed):
        return (
            f"The build was stopped: it used all of its {size(settings.M2D_BUILD_MEMORY)} of memory "
            "(M2D_BUILD_MEMORY). A package that compiles from source may need less parallelism, or "
            "a prebuilt wheel."
        )
    too_big = ("File size limit exceeded", "File too large", "exit status: 153", "signal: 25 ", "SIGXFSZ")
    if code == 153 or any(word in build_log for word in too_big):
        return (
            f"The build was stopped: it wrote a file larger than its limit of "
            f"{human_size(settings.M2D_BUILD_MAX_BYTES)} (M2D_BUILD_MAX_BYTES)."
        )
    if "Resource temporarily unavailable" in build_log or "can't start new thread" in build_log:
        return (
            f"The build reached its limit of {settings.M2D_BUILD_PIDS} processes and threads "
            "(M2D_BUILD_PIDS) and could not go on."
        )
    if INSTALL_STEP in error or "pip install" in error:
        missing = sorted({next(g for g in found if g) for found in MISSING_PACKAGE.findall(build_log)})
        what = f" ({', '.join(missing)})" if missing else ""
        return (
            f"Installing requirements.txt failed{what}. Check the package names and versions; "
            "the end of the build log shows the installer's message."
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


def size(docker_size: str) -> str:
    units = {"k": "KiB", "m": "MiB", "g": "GiB"}
    number, unit = docker_size[:-1], docker_size[-1:].lower()
    return f"{number} {units[unit]}" if unit in units else f"{docker_size} bytes"
