"""The sealing of a one-container job of researchers' code beside runs: a serving worker, a
disclosure-risk job. Sealed like a run, and more: its /tmp runs nothing, and an init process
forwards signals and reaps what the code leaves behind."""

from __future__ import annotations

from typing import Protocol

from .engine import LABEL_ROLE
from .runs import container_log_config, sealed_kwargs


class SealedSpec(Protocol):
    @property
    def user(self) -> str: ...
    @property
    def memory(self) -> str: ...
    @property
    def cpus(self) -> float: ...
    @property
    def pids(self) -> int: ...
    @property
    def shm_size(self) -> str: ...
    @property
    def tmp_size(self) -> str: ...
    @property
    def labels(self) -> dict[str, str]: ...


def sealed_container_kwargs(spec: SealedSpec, role: str) -> dict:
    """Its user, caps, read-only root and capped /tmp, its init, labels (role among them) and log caps."""
    return dict(
        **sealed_kwargs(
            user=spec.user,
            tmp=f"rw,nosuid,nodev,size={spec.tmp_size},mode=1777",
            memory=spec.memory,
            cpus=spec.cpus,
            pids=spec.pids,
            shm_size=spec.shm_size,
        ),
        init=True,
        labels={**spec.labels, LABEL_ROLE: role},
        log_config=container_log_config(),
        detach=True,
    )
