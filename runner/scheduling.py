"""Run slots and the queue of record.

A slot is one place a run can happen: one GPU of one host (`M2D_GPU_IDS`), or one of
`M2D_CPU_SLOTS` CPU places. Each process of the run worker owns one slot. A free slot claims the
next queued submission atomically, fairly across researchers: the researcher with the fewest
running jobs first, then the oldest submission. Celery messages only wake slots up.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Count, IntegerField, Q, Value, When
from django.utils import timezone

from submissions.models import Submission
from submissions.transitions import TransitionConflict, transition

log = logging.getLogger(__name__)
S = Submission.Status


@dataclass(frozen=True)
class Slot:
    host: str
    name: str
    gpu_id: str | None

    @property
    def label(self) -> str:
        return f"{self.host}/{self.name}"


def host_name() -> str:
    return settings.M2D_HOST_NAME or socket.gethostname()


def slots() -> list[Slot]:
    host = host_name()
    if settings.M2D_GPU_IDS:
        return [Slot(host, f"gpu{gpu}", str(gpu)) for gpu in settings.M2D_GPU_IDS]
    return [Slot(host, f"cpu{i}", None) for i in range(settings.M2D_CPU_SLOTS)]


def slot_for_process(index: int | None = None) -> Slot:
    """The slot of this worker process: its index in the Celery pool, or M2D_SLOT_INDEX."""
    if index is None:
        index = int(os.environ.get("M2D_SLOT_INDEX", "0"))
    configured = slots()
    return configured[index % len(configured)]


def _running_counts() -> dict[int, int]:
    """Running submissions per owner (owners with none are left out): a few rows, one per busy slot."""
    return dict(Submission.objects.filter(status=S.RUNNING).order_by().values_list("owner").annotate(n=Count("pk")))


def _owner_running(counts: dict[int, int]):
    """Each row's owner's running count as a plain expression of its owner id. (A subquery per
    queued row made every claim scan the queue once per queued row, where the planner had no
    statistics yet: seconds with a thousand queued.)"""
    by_count: dict[int, list[int]] = {}
    for owner, n in counts.items():
        by_count.setdefault(n, []).append(owner)
    if not by_count:
        return Value(0, output_field=IntegerField())
    whens = [When(owner_id__in=owners, then=Value(n)) for n, owners in sorted(by_count.items())]
    return Case(*whens, default=Value(0), output_field=IntegerField())


def candidates(limit: int = 20):
    """Queued submissions in the order slots take them; owners at their running limit wait."""
    counts = _running_counts()
    queryset = Submission.objects.filter(status=S.QUEUED).annotate(owner_running=_owner_running(counts))
    if settings.M2D_MAX_RUNNING_PER_RESEARCHER:
        full = [owner for owner, n in counts.items() if n >= settings.M2D_MAX_RUNNING_PER_RESEARCHER]
        queryset = queryset.exclude(owner_id__in=full)
    return queryset.order_by("owner_running", "created_at", "id")[:limit]


def claim_next(slot: Slot) -> Submission | None:
    """Move the next fair candidate to running on this slot. Two slots never get the same one:
    PostgreSQL skips rows another slot is locking; everywhere the conditional update decides."""
    for _ in range(5):
        with transaction.atomic():
            ids = list(candidates().values_list("pk", flat=True))
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


def queue_order() -> list[int]:
    """Every queued submission's id, next to run first, in the fair order (one query)."""
    return list(
        Submission.objects.filter(status=S.QUEUED)
        .annotate(owner_running=_owner_running(_running_counts()))
        .order_by("owner_running", "created_at", "id")
        .values_list("pk", flat=True)
    )


def stale_runs(host: str | None = None):
    """Running submissions whose slot stopped reporting: their worker died."""
    limit = timezone.now() - timedelta(seconds=settings.M2D_HEARTBEAT_SECONDS * 3)
    queryset = Submission.objects.filter(status=S.RUNNING).filter(
        Q(heartbeat_at__lt=limit) | Q(heartbeat_at__isnull=True)
    )
    return queryset.filter(slot__startswith=f"{host}/") if host else queryset


def stale_builds():
    limit = timezone.now() - timedelta(seconds=settings.M2D_HEARTBEAT_SECONDS * 3)
    return Submission.objects.filter(status=S.BUILDING).filter(Q(heartbeat_at__lt=limit) | Q(heartbeat_at__isnull=True))


def take_over(submission: Submission) -> bool:
    """Claim the right to wait for an orphaned run (one taker wins)."""
    limit = timezone.now() - timedelta(seconds=settings.M2D_HEARTBEAT_SECONDS * 3)
    return bool(
        Submission.objects.filter(pk=submission.pk, status=S.RUNNING)
        .filter(Q(heartbeat_at__lt=limit) | Q(heartbeat_at__isnull=True))
        .update(heartbeat_at=timezone.now())
    )


def beat(submission_id: int) -> None:
    Submission.objects.filter(pk=submission_id, status__in=[S.BUILDING, S.RUNNING]).update(heartbeat_at=timezone.now())
