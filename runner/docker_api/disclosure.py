"""One-shot containers of a disclosure-risk assessment: the model's scoring in the submission's own
image, and SACRO-ML's attack or ACRO's table checks in the platform's disclosure image.

Each is sealed like a run (no network at all, its own user, no capabilities, a read-only root, a
capped /tmp, memory, CPU and process caps), runs to its end or to its time limit, and is removed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from docker.errors import APIError, NotFound
from docker.types import Ulimit

from .engine import PlatformFault, client, engine_errors, remove_named
from .sealed import sealed_container_kwargs


@dataclass(frozen=True)
class Mount:
    host: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class SealedJobSpec:
    name: str
    image: str
    command: tuple[str, ...]
    mounts: tuple[Mount, ...]
    user: str
    memory: str
    cpus: float
    timeout: float  # seconds from start to kill
    pids: int = 256
    shm_size: str = "64m"
    tmp_size: str = "256m"
    environment: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    file_size_cap: int = 0  # bytes any one file it writes may reach (0: no cap beyond its mounts)


@dataclass(frozen=True)
class SealedJobOutcome:
    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    seconds: float
    log_tail: str  # the last lines of its output, for the platform's own log


def sealed_job_kwargs(spec: SealedJobSpec) -> dict:
    kwargs = dict(
        image=spec.image,
        command=list(spec.command),
        entrypoint=[],
        name=spec.name,
        network_mode="none",
        volumes={str(m.host): {"bind": m.target, "mode": "rw" if m.writable else "ro"} for m in spec.mounts},
        working_dir="/tmp",
        environment={"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", **spec.environment},
        **sealed_container_kwargs(spec, "disclosure"),
    )
    if spec.file_size_cap:
        kwargs["ulimits"] = [Ulimit(name="fsize", soft=spec.file_size_cap, hard=spec.file_size_cap)]
    return kwargs


@engine_errors
def run_sealed_job(spec: SealedJobSpec) -> SealedJobOutcome:
    """Run the container to its end, killing it at its time limit; it is removed either way. A
    container of the same name left by an earlier try (a worker that died) is removed first."""
    remove_sealed_job(spec.name)
    try:
        container = client().containers.create(**sealed_job_kwargs(spec))
    except APIError as exc:  # the image is missing, a mount is refused: the platform's to mend
        raise PlatformFault(f"the container {spec.name} could not be made: {exc.explanation or exc}") from exc
    started = time.monotonic()
    timed_out = False
    try:
        container.start()
        try:
            container.wait(timeout=spec.timeout)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            timed_out = True
            try:
                container.kill()
            except (NotFound, APIError):
                pass  # it ended just now
            container.wait(timeout=60)
        seconds = time.monotonic() - started
        container.reload()
        state = container.attrs["State"]
        log_tail = container.logs(stdout=True, stderr=True, tail=40)[-4000:].decode(errors="replace")
        return SealedJobOutcome(
            exit_code=state.get("ExitCode"),
            timed_out=timed_out,
            oom_killed=bool(state.get("OOMKilled")),
            seconds=seconds,
            log_tail=log_tail,
        )
    finally:
        remove_sealed_job(spec.name)


def remove_sealed_job(name: str) -> None:
    remove_named(name)
