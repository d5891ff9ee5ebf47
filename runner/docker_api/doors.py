"""A build's door container: no network but loopback, where a relay to the package index listens.

The build's steps join its network namespace (`network_mode=container:<door>`), so the only
address they can reach is the relay on their own loopback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from docker.errors import APIError, NotFound

from .engine import LABEL_ROLE, PlatformFault, client, engine_errors, find_container
from .runs import relay_kwargs, wait_forwarder_ready


@dataclass(frozen=True)
class DoorSpec:
    name: str
    image: str  # the run forwarder's image: a relay from loopback TCP to a unix socket
    socket_dir: Path  # holds index.sock, mounted read-only
    port: int
    user: str
    labels: dict[str, str]


@engine_errors
def start_door(spec: DoorSpec) -> str:
    """Start the door (idempotent); returns its container id once its relay listens."""
    door = find_container(spec.name) or client().containers.create(
        **relay_kwargs(
            image=spec.image,
            name=spec.name,
            user=spec.user,
            socket_dir=spec.socket_dir,
            mount="/door",
            labels={**spec.labels, LABEL_ROLE: "door"},
            environment={"FORWARD_LISTEN_PORT": str(spec.port), "FORWARD_SOCKET": "/door/index.sock"},
        )
    )
    door.start()
    wait_forwarder_ready(door)
    return door.id


@engine_errors
def door_running(container_id: str) -> bool:
    """Whether the door still stands: a kept door is checked before each build it serves."""
    try:
        return client().api.inspect_container(container_id)["State"]["Running"]
    except NotFound:
        return False


@engine_errors
def doors_labelled(labels: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """(name, labels) of every door carrying these labels."""
    filters = {"label": [f"{key}={value}" for key, value in {**labels, LABEL_ROLE: "door"}.items()]}
    found = client().containers.list(all=True, filters=filters, ignore_removed=True)
    return [(door.name, dict(door.labels)) for door in found]


@engine_errors
def remove_door(name: str) -> None:
    """Remove the door if it is there, also when another (the reconciler) is removing it."""
    door = find_container(name)
    if door is None:
        return
    try:
        door.remove(force=True)
    except NotFound:
        return
    except APIError as exc:
        if exc.status_code != 409:  # 409: its removal is already in progress
            raise
    deadline = time.monotonic() + 30
    while find_container(name) is not None:
        if time.monotonic() > deadline:
            raise PlatformFault(f"the container {name} is still there")
        time.sleep(0.1)
