"""Serving containers: one per worker of a deployed model version, sealed like a run.

The model's code runs only here. The container has no network at all (not even a forwarder), no
data set, no export folder and never the Docker socket; it sees the version's files read-only, the
platform's server read-only, and a small folder of its own where it makes its socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from docker.types import DeviceRequest

from .engine import LABEL_ROLE, client, engine_errors, find_container, remove_named
from .sealed import sealed_container_kwargs


@dataclass(frozen=True)
class ServeSpec:
    name: str
    image: str  # the submission's own image: its requirements are installed, nothing is at serve time
    model_dir: Path  # the version's files, checked against their hashes
    server_dir: Path  # the platform's server (docker_scripts/serve)
    socket_dir: Path  # this worker's folder, where the server makes worker.sock
    user: str
    memory: str
    cpus: float
    pids: int
    shm_size: str
    tmp_size: str
    labels: dict[str, str] = field(default_factory=dict)
    gpu_id: str | None = None
    in_flight: int = 1  # predictions the server runs at once; more wait, then are refused as busy
    queue_seconds: float = 2.0
    card: str = ""  # the registered card as JSON (the released m2d-model.json merged with the request's)


def serve_kwargs(spec: ServeSpec) -> dict:
    kwargs = dict(
        image=spec.image,
        command=["python3", "/opt/m2d/serve/m2d_serve.py", "--socket", "/run/m2d/worker.sock"],
        entrypoint=[],
        name=spec.name,
        network_mode="none",
        volumes={
            str(spec.model_dir): {"bind": "/opt/m2d/model", "mode": "ro"},
            str(spec.server_dir): {"bind": "/opt/m2d/serve", "mode": "ro"},
            str(spec.socket_dir): {"bind": "/run/m2d", "mode": "rw"},
        },
        working_dir="/opt/m2d/model",
        environment={
            "HOME": "/tmp",
            "PYTHONDONTWRITEBYTECODE": "1",
            "M2D_SERVE_DEVICE": "cuda" if spec.gpu_id is not None else "cpu",
            "M2D_SERVE_IN_FLIGHT": str(spec.in_flight),
            "M2D_SERVE_QUEUE_SECONDS": f"{spec.queue_seconds:g}",
            "M2D_SERVE_CARD": spec.card,
        },
        **sealed_container_kwargs(spec, "serve"),
    )
    if spec.gpu_id is not None:
        kwargs["device_requests"] = [DeviceRequest(device_ids=[str(spec.gpu_id)], capabilities=[["gpu"]])]
    return kwargs


@engine_errors
def start_serve_worker(spec: ServeSpec) -> str:
    """Start the worker's container (idempotent); returns its id. Readiness is the caller's to wait for."""
    container = find_container(spec.name) or client().containers.create(**serve_kwargs(spec))
    if container.status != "running":
        container.start()
    return container.id


class WorkerContainer(NamedTuple):
    status: str  # "missing" when there is no such container
    exit_code: int | None
    oom_killed: bool
    started_at: datetime | None  # its last start: later than the worker's ready time after a restart


@engine_errors
def serve_worker_state(name: str) -> WorkerContainer:
    container = find_container(name)
    if container is None:
        return WorkerContainer("missing", None, False, None)
    state = container.attrs["State"]
    return WorkerContainer(
        container.status, state.get("ExitCode"), bool(state.get("OOMKilled")), _when(state.get("StartedAt"))
    )


def _when(stamp: str | None) -> datetime | None:
    """The engine's RFC 3339 time (nanoseconds, Z) as an aware datetime; None before any start."""
    if not stamp or stamp.startswith("0001-"):
        return None
    day, _, rest = stamp.rstrip("Z").partition("T")
    clock, _, fraction = rest.partition(".")
    return datetime.fromisoformat(f"{day}T{clock}.{(fraction + '000000')[:6]}+00:00")


@engine_errors
def serve_worker_log(name: str, limit: int = 4000) -> str:
    container = find_container(name)
    return container.logs(tail=200)[-limit:].decode(errors="replace") if container is not None else ""


def remove_serve_worker(name: str) -> None:
    remove_named(name)


@engine_errors
def serve_workers_labelled(labels: dict[str, str]) -> list[str]:
    filters = {"label": [f"{k}={v}" for k, v in {**labels, LABEL_ROLE: "serve"}.items()]}
    return [c.name for c in client().containers.list(all=True, filters=filters, ignore_removed=True)]
