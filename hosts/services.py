"""Writes of the host registry: each host's heartbeat with its health, and an admin's drain.

A host records its own health (the runner measures it); an admin drains a host so that it takes
no new work while what runs there finishes. Both are audited in HostEvent."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runner.dispatch import reconcile_serving, wake_run_slots

from .facts import HostFacts
from .models import Host, HostEvent


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def problem_of(facts: HostFacts) -> str:
    """Why a host with these facts should take no new work ('' when it may)."""
    problems = []
    if not facts.engine_ok:
        problems.append(f"its Docker engine does not answer ({facts.engine_problem})")
    least = settings.M2D_HOST_MIN_FREE_BYTES
    if facts.disk_free_bytes is not None and facts.disk_free_bytes < least:
        problems.append(
            f"{facts.disk_path} has {_size(facts.disk_free_bytes)} free, under the {_size(least)} of "
            "M2D_HOST_MIN_FREE_BYTES; free space there"
        )
    return "; ".join(problems)


def host_report(*, facts: HostFacts) -> Host:
    """A host's heartbeat: its slots and health now. A change of health is written to its events."""
    problem = problem_of(facts)
    with transaction.atomic():
        host, created = Host.objects.select_for_update().get_or_create(name=facts.name)
        if created:
            HostEvent.objects.create(host=host, note="first heartbeat")
        if problem != host.problem:
            note = f"unhealthy: {problem}" if problem else "healthy again"
            HostEvent.objects.create(host=host, note=note)
            if not problem and not host.draining:
                transaction.on_commit(wake_run_slots)  # its slots may take the queued work now
        host.cpu_slots = 0 if facts.gpu_ids else facts.cpu_slots
        host.gpu_ids = list(facts.gpu_ids)
        host.engine_ok = facts.engine_ok
        host.disk_free_bytes = facts.disk_free_bytes
        host.disk_path = facts.disk_path
        host.problem = problem
        host.heartbeat_at = timezone.now()
        host.save()
    return host


def host_serves(*, name: str, relay: str) -> None:
    """What a host's serving agent says at each reconcile: the relay its workers are reached
    through ('' for the gateway's own host), and so whether it has a serving queue of its own."""
    Host.objects.filter(name=name).exclude(serve_relay=relay).update(serve_relay=relay)


def host_drain(*, by, host: Host, note: str = "") -> bool:
    """Stop a host taking new work; what runs there runs to its end. False when it was draining."""
    with transaction.atomic():
        changed = Host.objects.filter(pk=host.pk, draining=False).update(
            draining=True, drain_requested_at=timezone.now(), drain_requested_by=by
        )
        if changed:
            HostEvent.objects.create(host=host, by=by, note="drained" + (f": {note}" if note else ""))
            # Its serving workers move to other hosts.
            transaction.on_commit(reconcile_serving)
    host.refresh_from_db()
    return bool(changed)


def host_undrain(*, by, host: Host, note: str = "") -> bool:
    """Let a drained host take work again. False when it was not draining."""
    with transaction.atomic():
        changed = Host.objects.filter(pk=host.pk, draining=True).update(
            draining=False, drain_requested_at=None, drain_requested_by=None
        )
        if changed:
            HostEvent.objects.create(host=host, by=by, note="drain lifted" + (f": {note}" if note else ""))
            transaction.on_commit(wake_run_slots)
            transaction.on_commit(reconcile_serving)
    host.refresh_from_db()
    return bool(changed)
