"""The narrow interface between the platform and the Docker engine.

This package is the only one that imports `docker`. Callers hand over frozen specs and get plain
results back; engine trouble surfaces as `PlatformFault`, never as the researcher's error.
Everything created carries labels, so a restarted worker can find what it left behind.

engine: the client, errors and labels; logs: capped logs and tails; images: build, remove,
describe; runs: the forwarder and run containers; doors: a build's way to the package index.
"""

from .doors import DoorSpec, door_running, doors_labelled, remove_door, start_door
from .engine import (
    LABEL_INSTANCE,
    LABEL_ROLE,
    LABEL_SLOT,
    LABEL_SUBMISSION,
    PlatformFault,
    client,
    engine_root,
    engine_url,
    list_labelled,
    wait_for_engine,
)
from .images import (
    BuildCancelled,
    BuildFailed,
    BuildSpec,
    CacheLayerLost,
    ImageFile,
    build_image,
    describe_image,
    image_exists,
    prune_build_cache,
    read_image_files,
    remove_build_leftovers,
    remove_image,
)
from .logs import CappedLog, tail
from .runs import (
    RunOutcome,
    RunSpec,
    container_gpus,
    forwarder_kwargs,
    remove_run,
    run_exists,
    run_is_running,
    run_kwargs,
    start_run,
    stop_run,
    wait_run,
)
from .serving import (
    ServeSpec,
    remove_serve_worker,
    serve_worker_log,
    serve_worker_state,
    serve_workers_labelled,
    start_serve_worker,
)

__all__ = [
    "LABEL_INSTANCE",
    "LABEL_ROLE",
    "LABEL_SLOT",
    "LABEL_SUBMISSION",
    "BuildCancelled",
    "BuildFailed",
    "BuildSpec",
    "CacheLayerLost",
    "CappedLog",
    "DoorSpec",
    "door_running",
    "doors_labelled",
    "ImageFile",
    "PlatformFault",
    "RunOutcome",
    "RunSpec",
    "ServeSpec",
    "remove_serve_worker",
    "serve_worker_log",
    "serve_worker_state",
    "serve_workers_labelled",
    "start_serve_worker",
    "build_image",
    "client",
    "container_gpus",
    "describe_image",
    "engine_root",
    "engine_url",
    "forwarder_kwargs",
    "image_exists",
    "list_labelled",
    "prune_build_cache",
    "read_image_files",
    "remove_build_leftovers",
    "remove_door",
    "remove_image",
    "remove_run",
    "run_exists",
    "run_is_running",
    "run_kwargs",
    "start_door",
    "start_run",
    "stop_run",
    "tail",
    "wait_for_engine",
    "wait_run",
]
