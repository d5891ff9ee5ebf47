"""Reads of the host registry: may a host take new work, where may a serving worker go, and
what the dashboard shows of each host."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from serving.models import ServeWorker
from submissions.models import Submission

from .models import Host


def silent_before():
    """A host not heard of since then has stopped: three missed heartbeats."""
    return timezone.now() - timedelta(seconds=settings.M2D_HEARTBEAT_SECONDS * 3)


def may_claim(name: str) -> bool:
    """Whether a host may take new work: not when it is draining or its last heartbeat found it
    unhealthy. (The claiming host reports itself just before it claims, so its row is fresh; a
    host that never reported has nothing recorded against it.)"""
    return not Host.objects.filter(name=name).filter(Q(draining=True) | ~Q(problem="")).exists()


def placeable_hosts(slot_kind: str) -> list[str]:
    """Hosts a new serving worker of that slot kind may go to: heard of lately, healthy, not
    draining, and for a GPU one, with GPUs (every host has CPUs)."""
    hosts = Host.objects.filter(draining=False, problem="", heartbeat_at__gte=silent_before())
    if slot_kind == Host.SlotKind.GPU:
        hosts = hosts.exclude(gpu_ids=[])
    return list(hosts.values_list("name", flat=True))


def lock_slots_of(host: str) -> None:
    """Inside a transaction: keep every other claim of this host's run slots (by a run or a
    serving worker) waiting until it ends. The host's row is the lock on PostgreSQL; SQLite's
    transactions take the write lock up front, which serializes them anyway."""
    list(Host.objects.select_for_update().filter(name=host).values_list("pk", flat=True))


def slots_held(labels) -> dict[str, str]:
    """Which of these run slots are taken, and by what: a running submission or a live serving worker."""
    held = {
        label: f"submission {pk}"
        for label, pk in Submission.objects.filter(status=Submission.Status.RUNNING, slot__in=labels).values_list(
            "slot", "pk"
        )
    }
    for label, worker in ServeWorker.objects.filter(
        state__in=[ServeWorker.State.STARTING, ServeWorker.State.READY], slot__in=labels
    ).values_list("slot", "pk"):
        held[label] = f"serving worker {worker}"
    return held


def free_gpu_slots() -> list[str]:
    """The GPU slots of the hosts that take new work that no run and no serving worker holds now."""
    hosts = Host.objects.filter(name__in=placeable_hosts(Host.SlotKind.GPU)).order_by("name")
    labels = [f"{host.name}/gpu{gpu}" for host in hosts for gpu in host.gpu_ids]
    held = slots_held(labels)
    return [label for label in labels if label not in held]


def gpu_hosts() -> list[str]:
    """Hosts that have offered GPU slots (M2D_GPU_IDS), whatever their state now."""
    return list(Host.objects.exclude(gpu_ids=[]).values_list("name", flat=True))


def all_hosts() -> list[Host]:
    return list(Host.objects.select_related("drain_requested_by").order_by("name"))


def runs_on(name: str) -> list[int]:
    """The submissions running on a host's slots now."""
    return list(
        Submission.objects.filter(status=Submission.Status.RUNNING, slot__startswith=f"{name}/")
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def serving_workers_by_host() -> dict[str, list[str]]:
    """The live serving workers on each host that hold no run slot, as "model version" (one query)."""
    live = ServeWorker.objects.filter(state__in=[ServeWorker.State.STARTING, ServeWorker.State.READY], slot="")
    by_host: dict[str, list[str]] = {}
    for host, model, number in live.order_by("pk").values_list(
        "host", "deployment__version__model__name", "deployment__version__number"
    ):
        by_host.setdefault(host, []).append(f"{model} {number}")
    return by_host


def serving_workers_by_slot() -> dict[str, dict]:
    """The live serving workers that hold a run slot (a GPU), by slot label (one query)."""
    live = ServeWorker.objects.filter(state__in=[ServeWorker.State.STARTING, ServeWorker.State.READY]).exclude(slot="")
    return {
        slot: {"worker": pk, "model": model, "version": number, "state": state}
        for slot, pk, model, number, state in live.values_list(
            "slot", "pk", "deployment__version__model__name", "deployment__version__number", "state"
        )
    }
