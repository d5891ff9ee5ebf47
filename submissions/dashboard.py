"""What the admin dashboard shows: the hosts and what runs on each of their slots, the queue,
recent failures, and what waits for an admin. Reads only; a fixed number of queries whatever the size of the tables."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Max
from django.utils import timezone

from accounts.models import Researcher
from exports.selectors import exports_awaiting_review
from hosts.selectors import all_hosts, serving_workers_by_host, serving_workers_by_slot, silent_before

from .models import Submission, SubmissionEvent
from .progress import QueueView, humanize_seconds

S = Submission.Status
FAILURE_WINDOW = timedelta(days=7)
SHOWN = 50


def _age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _since(status: str, ids: list[int]) -> dict[int, object]:
    """When each submission last entered `status`."""
    return dict(
        SubmissionEvent.objects.filter(submission_id__in=ids, to_status=status)
        .values("submission_id")
        .annotate(at=Max("at"))
        .values_list("submission_id", "at")
    )


def admin_dashboard() -> dict:
    now = timezone.now()
    queue = QueueView()
    queued_ids = list(queue.positions)[:SHOWN]
    queued = {s.pk: s for s in Submission.objects.filter(pk__in=queued_ids).select_related("owner__researcher")}
    queued_since = _since(S.QUEUED, queued_ids)
    waiting = [
        {
            "submission": queued[pk],
            "position": queue.positions[pk],
            "waiting_for": _age(now - queued_since.get(pk, queued[pk].created_at)),
            "estimate": humanize_seconds(queue.estimated_wait_seconds(queued[pk])),
        }
        for pk in queued_ids
        if pk in queued
    ]
    running = list(Submission.objects.filter(status=S.RUNNING).select_related("owner__researcher").order_by("slot"))
    started = _since(S.RUNNING, [s.pk for s in running])
    runs = [
        {
            "submission": s,
            "age": _age(now - started.get(s.pk, s.updated_at)),
            "heartbeat_age": _age(now - s.heartbeat_at) if s.heartbeat_at else "",
        }
        for s in running
    ]
    hosts = _hosts(now, running)
    recent = Submission.objects.filter(status=S.FAILED, updated_at__gte=now - FAILURE_WINDOW)
    by_stage = dict(recent.order_by().values("failure_stage").annotate(n=Count("pk")).values_list("failure_stage", "n"))
    return {
        "queued_total": len(queue.positions),
        "waiting": waiting,
        "runs": runs,
        "hosts": hosts,
        "failures_by_stage": sorted(by_stage.items(), key=lambda item: -item[1]),
        "recent_failures": list(recent.select_related("owner__researcher").order_by("-updated_at")[:10]),
        "pending_researchers": Researcher.objects.filter(status=Researcher.Status.PENDING).count(),
        "exports_awaiting": list(exports_awaiting_review()[:SHOWN]),
    }


def _hosts(now, running: list[Submission]) -> list[dict]:
    """Each host: its slots and what runs on each, how long since it was heard of, its health and
    whether it is draining (three queries: the running submissions are given). A GPU slot a serving
    worker holds shows that worker."""
    by_slot = {s.slot: s for s in running}
    serving = serving_workers_by_host()
    serving_by_slot = serving_workers_by_slot()
    silent = silent_before()
    rows = []
    for host in all_hosts():
        names = [f"gpu{gpu}" for gpu in host.gpu_ids] if host.gpu_ids else [f"cpu{i}" for i in range(host.cpu_slots)]
        labels = [f"{host.name}/{name}" for name in names]
        labels += sorted(label for label in by_slot if label.startswith(f"{host.name}/") and label not in labels)
        if host.heartbeat_at is None or host.heartbeat_at < silent:
            health = "silent"
        else:
            health = "unhealthy" if host.problem else "healthy"
        rows.append(
            {
                "host": host,
                "kind": host.slot_kind,
                "slots": [
                    {"label": label, "submission": by_slot.get(label), "serving": serving_by_slot.get(label)}
                    for label in labels
                ],
                "serving": serving.get(host.name, []),
                "heartbeat_age": _age(now - host.heartbeat_at) if host.heartbeat_at else "",
                "health": health,
            }
        )
    return rows
