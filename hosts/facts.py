"""What a host says of itself at each heartbeat: handed over by the runner, recorded by
hosts.services. Plain values only, so the runner and the recorder share no model."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostFacts:
    name: str
    cpu_slots: int  # 0 on a GPU host: its slots are its GPUs
    gpu_ids: tuple[str, ...]
    engine_ok: bool
    engine_problem: str  # why the engine did not answer ('' when it did)
    disk_free_bytes: int | None  # the least free space of the folders the host writes to
    disk_path: str  # the folder with the least free space
