"""The queue of record and the run slots that take from it: which queued submission runs next.

Pages ask it where a submission waits; the runner's slots claim from it (runner.scheduling). The
fair order: the researcher with the fewest running jobs first, then the oldest; researchers at
M2D_MAX_RUNNING_PER_RESEARCHER wait.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Case, Count, IntegerField, Value, When

from .models import Submission

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


def serving_queue(host: str) -> str:
    """The Celery queue of a further serving host's agent (docker-compose.serving-host.yml), which
    takes nothing else: its own reconciles, never the first host's maintenance work."""
    return f"serve.{host}"


def slots() -> list[Slot]:
    host = host_name()
    if settings.M2D_GPU_IDS:
        return [Slot(host, f"gpu{gpu}", str(gpu)) for gpu in settings.M2D_GPU_IDS]
    return [Slot(host, f"cpu{i}", None) for i in range(settings.M2D_CPU_SLOTS)]


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


def queue_order() -> list[int]:
    """Every queued submission's id, next to run first, in the fair order (one query)."""
    return list(
        Submission.objects.filter(status=S.QUEUED)
        .annotate(owner_running=_owner_running(_running_counts()))
        .order_by("owner_running", "created_at", "id")
        .values_list("pk", flat=True)
    )
