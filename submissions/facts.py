"""What the runner reports of a run that has ended: facts only, frozen. The services decide what
they mean and record them (submissions.services.run_facts_record, build_facts_record,
exports.services.run_exports_record)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TrackingTotals:
    """What went through a run's tracking gateway, over all the submission's attempts."""

    calls: int = 0  # refused ones included
    refused: int = 0
    bytes_sent: int = 0  # out of the sandbox: what the exit budget and M2D_TRACKING_MAX_BYTES meter
    bytes_received: int = 0  # answers into it: capped by M2D_TRACKING_MAX_BYTES_IN


@dataclass(frozen=True)
class RunFacts:
    submission_id: int
    export_folder: Path  # where what the run left in /mnt/export was copied to
    exit_code: int | None = None
    oom_killed: bool = False  # the engine said the run met its memory limit
    timed_out: bool = False  # stopped at the wall-clock limit
    silent: bool = False  # stopped after printing nothing for too long
    fault: str = ""  # the platform lost the run, and how; the other facts of the run may be missing
    log_tail: str = ""  # the last lines of the run's output, before the log policy caps them
    tracking: TrackingTotals = TrackingTotals()
    export_problem: str = ""  # what the run left broke the export limits, and nothing of it was kept
    gpus: tuple[str, ...] = ()  # the GPUs the engine handed the run
    provenance_problems: tuple[str, ...] = ()  # what the runner could not read for the provenance record


@dataclass(frozen=True)
class BuildFacts:
    """How a build ended. At most one of image_id, cancelled, timed_out and failure_stage is set."""

    submission_id: int
    image_id: str = ""  # the image it made
    cancelled: bool = False
    timed_out: bool = False
    failure_stage: str = ""  # "build" (the researcher's requirements or code) or "infrastructure"
    reason: str = ""  # in the researcher's words
    log_tail: str = ""  # the last lines of the build's log, before the log policy caps them
