"""This host's heartbeat: its slots, whether its Docker engine answers, and the free space of the
folders it writes to (the export volumes, the collected exports, the gateway sockets, the engine's
own data root where this process sees it). hosts.services records it; a host found unhealthy, or
drained by an admin, claims no new work (runner.scheduling)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from hosts.facts import HostFacts
from hosts.selectors import may_claim
from hosts.services import host_report
from submissions.queue import host_name

from . import docker_api
from .every import every

log = logging.getLogger(__name__)


def _free_bytes(path: Path) -> int | None:
    """Free space for an unprivileged writer where `path` is (or would be made)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def watched_folders(engine_root: str = "") -> list[Path]:
    folders = [
        settings.M2D_EXPORT_VOLUME_DIR,
        settings.M2D_EXPORT_ROOT,
        settings.M2D_GATEWAY_DIR,
        *settings.M2D_HOST_DISK_PATHS,
    ]
    if engine_root and Path(engine_root).is_dir():
        folders.append(Path(engine_root))
    return [Path(folder) for folder in folders]


def facts_now() -> HostFacts:
    try:
        root, engine_ok, engine_problem = docker_api.engine_root(), True, ""
    except docker_api.PlatformFault as exc:
        root, engine_ok, engine_problem = "", False, str(exc)
    least: tuple[int, Path] | None = None
    for folder in watched_folders(root):
        free = _free_bytes(folder)
        if free is not None and (least is None or free < least[0]):
            least = (free, folder)
    return HostFacts(
        name=host_name(),
        cpu_slots=settings.M2D_CPU_SLOTS,
        gpu_ids=tuple(str(gpu) for gpu in settings.M2D_GPU_IDS),
        engine_ok=engine_ok,
        engine_problem=engine_problem,
        disk_free_bytes=least[0] if least else None,
        disk_path=str(least[1]) if least else "",
    )


def report() -> str:
    """Measure this host and record it; why it must take no new work ('' when it may)."""
    host = host_report(facts=facts_now())
    if host.problem:
        log.warning("host %s takes no new work: %s", host.name, host.problem)
    return host.problem


def takes_work() -> bool:
    """Whether this host may take new work now, as its last report and the admins' drain say."""
    return may_claim(host_name())


def start_heartbeat(on_beat: Callable[[bool], None] | None = None) -> threading.Thread:
    """Report this host every M2D_HEARTBEAT_SECONDS from a thread of the worker's main process, so
    that an idle host is seen alive and its health stays current; `on_beat` is told each time
    whether the host may take new work."""

    def beat() -> None:
        report()
        if on_beat is not None:
            on_beat(takes_work())

    return every(lambda: settings.M2D_HEARTBEAT_SECONDS, beat, "m2d-host-heartbeat", "host heartbeat not recorded")
