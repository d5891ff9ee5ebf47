"""Where a waiting submission stands: its place in the run queue and a rough estimate of its start."""

from __future__ import annotations

import math
import statistics

from .models import Submission, SubmissionEvent
from .queue import queue_order, slots

S = Submission.Status
# How many recent runs the estimate learns from.
RECENT_RUNS = 20


def typical_run_seconds() -> float | None:
    """The median length of recent runs, or None before any run has ended."""
    ended = list(
        SubmissionEvent.objects.filter(from_status=S.RUNNING)
        .exclude(to_status=S.QUEUED)
        .order_by("-at", "-id")
        .values_list("submission_id", "at")[:RECENT_RUNS]
    )
    if not ended:
        return None
    started = dict(
        SubmissionEvent.objects.filter(to_status=S.RUNNING, submission_id__in=[pk for pk, _ in ended])
        .order_by("at", "id")
        .values_list("submission_id", "at")
    )
    lengths = [(at - started[pk]).total_seconds() for pk, at in ended if pk in started]
    return statistics.median(lengths) if lengths else None


class QueueView:
    """Queue positions and start estimates for many submissions, from three queries in all, and
    none while no submission asked about is queued (most pages show finished ones only)."""

    def __init__(self):
        self.slot_count = max(1, len(slots()))
        self._positions: dict[int, int] | None = None
        self._typical: float | None = None
        self._typical_read = False

    @property
    def positions(self) -> dict[int, int]:
        if self._positions is None:
            self._positions = {pk: index + 1 for index, pk in enumerate(queue_order())}
        return self._positions

    def position(self, submission: Submission) -> int | None:
        return self.positions.get(submission.pk) if submission.status == S.QUEUED else None

    def estimated_wait_seconds(self, submission: Submission) -> int | None:
        """Roughly how long until it starts: the runs ahead of it, slot by slot, at the typical length."""
        position = self.position(submission)
        if position is None:
            return None
        if not self._typical_read:
            self._typical, self._typical_read = typical_run_seconds(), True
        if self._typical is None:
            return None
        return int(math.ceil(position / self.slot_count) * self._typical)

    def describe(self, submission: Submission) -> dict:
        return {
            "queue_position": self.position(submission),
            "estimated_wait_seconds": self.estimated_wait_seconds(submission),
        }


def humanize_seconds(seconds: int | None) -> str:
    if seconds is None:
        return ""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def format_duration(seconds: float | None) -> str:
    """A measured length of time, as a person reads it: "0.4 s", "12 s", "3 min 12 s", "2 h 05 min"."""
    if seconds is None:
        return ""
    if round(seconds, 1) < 10:  # a short step to a tenth: "0.4 s", "2.5 s"
        return f"{round(seconds, 1):g} s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes} min {rest:02d} s" if rest else f"{minutes} min"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min" if rest // 60 else f"{hours} h"
