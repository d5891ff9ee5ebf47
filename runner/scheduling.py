"""Run slots and the queue of record.

A slot is one place a run can happen: one GPU of one host (`M2D_GPU_IDS`), or one of
`M2D_CPU_SLOTS` CPU places. Each process of the run worker owns one slot. A free slot claims the
next queued submission atomically, fairly across researchers: the researcher with the fewest
running jobs first, then the oldest submission. Celery messages only wake slots up.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from hosts.selectors import lock_slots_of, may_claim, slots_held
from submissions.models import Submission
from submissions.queue import Slot, candidates, slots
from submissions.transitions import TransitionConflict, transition

log = logging.getLogger(__name__)
S = Submission.Status


def slot_for_process(index: int | None = None) -> Slot:
    """The slot of this worker process: its index in the Celery pool, or M2D_SLOT_INDEX."""
    if index is None:
        index = int(os.environ.get("M2D_SLOT_INDEX", "0"))
    configured = slots()
    return configured[index % len(configured)]


def claim_next(slot: Slot) -> Submission | None:
    """Move the next fair candidate to running on this slot. Two slots never get the same one:
    PostgreSQL skips rows another slot is locking; everywhere the conditional update decides.
    A slot of a host that is draining, or that its last heartbeat found unhealthy, takes nothing;
    nor does a GPU slot a serving worker holds (both claim under the host's lock)."""
    if not may_claim(slot.host):
        return None
    for _ in range(5):
        with transaction.atomic():
            if slot.gpu_id is not None:
                lock_slots_of(slot.host)
                if slots_held([slot.label]).get(slot.label, "").startswith("serving"):
                    return None
            ids = list(candidates().values_list("pk", flat=True))
            if ids:
                lately = _lost_here_lately(slot.host, ids)
                ids = [pk for pk in ids if pk not in lately]
            if not ids:
                return None
            if connection.vendor == "postgresql":
                locked = list(
                    Submission.objects.select_for_update(skip_locked=True)
                    .filter(pk__in=ids, status=S.QUEUED)
                    .values_list("pk", flat=True)
                )
                ids = [pk for pk in ids if pk in locked]
            for pk in ids:
                try:
                    return transition(
                        Submission(pk=pk, status=S.QUEUED),
                        S.RUNNING,
                        slot=slot.label,
                        gpu_id=slot.gpu_id or "",
                        heartbeat_at=timezone.now(),
                    )
                except TransitionConflict:
                    continue
    return None


def _lost_here_lately(host: str, ids: list[int]) -> set[int]:
    """Runs this host lost to a platform fault moments ago: the fault may be the host's own (its
    engine going down, its disk full), so other hosts get the first three heartbeats to take them;
    a host alone takes them back after that."""
    since = timezone.now() - timedelta(seconds=settings.M2D_HEARTBEAT_SECONDS * 3)
    return set(
        Submission.objects.filter(
            pk__in=ids,
            slot__startswith=f"{host}/",
            infrastructure_retries__gt=0,
            events__to_status=S.QUEUED,
            events__at__gte=since,
        ).values_list("pk", flat=True)
    )


def _stale_before():
    """A build or run not heard of since then has lost its worker: three missed heartbeats."""
    return timezone.now() - timedelta(seconds=settings.M2D_HEARTBEAT_SECONDS * 3)


def _lost_before():
    """A run not heard of since then is not waited for any longer (M2D_RUN_LOST_SECONDS)."""
    return timezone.now() - timedelta(seconds=max(settings.M2D_RUN_LOST_SECONDS, settings.M2D_HEARTBEAT_SECONDS * 3))


def lost_runs():
    """Running submissions whose slot has been silent so long that no worker is coming back for them."""
    limit = _lost_before()
    return Submission.objects.filter(status=S.RUNNING).filter(Q(heartbeat_at__lt=limit) | Q(heartbeat_at__isnull=True))


def stale_runs(host: str | None = None):
    """Running submissions whose slot stopped reporting: their worker died."""
    limit = _stale_before()
    queryset = Submission.objects.filter(status=S.RUNNING).filter(
        Q(heartbeat_at__lt=limit) | Q(heartbeat_at__isnull=True)
    )
    return queryset.filter(slot__startswith=f"{host}/") if host else queryset


def stale_builds():
    limit = _stale_before()
    return Submission.objects.filter(status=S.BUILDING).filter(Q(heartbeat_at__lt=limit) | Q(heartbeat_at__isnull=True))


def take_over(submission: Submission, lost: bool = False) -> bool:
    """Claim the right to wait for an orphaned run, or (`lost`) to queue a lost one again: one taker
    wins, and the heartbeat it sets keeps every other out."""
    limit = _lost_before() if lost else _stale_before()
    return bool(
        Submission.objects.filter(pk=submission.pk, status=S.RUNNING)
        .filter(Q(heartbeat_at__lt=limit) | Q(heartbeat_at__isnull=True))
        .update(heartbeat_at=timezone.now())
    )


def runs_on_slots(slot_labels, submission_ids) -> list[int]:
    """Which of these submissions are running on one of those slots."""
    return list(
        Submission.objects.filter(pk__in=submission_ids, status=S.RUNNING, slot__in=slot_labels).values_list(
            "pk", flat=True
        )
    )


def beat(submission_id: int) -> None:
    Submission.objects.filter(pk=submission_id, status__in=[S.BUILDING, S.RUNNING]).update(heartbeat_at=timezone.now())
