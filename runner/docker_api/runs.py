"""Run containers: the forwarder and the sandboxed run beside it, followed to their end under a
watchdog, then removed."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from docker.errors import APIError, NotFound
from docker.types import DeviceRequest, LogConfig

from .engine import LABEL_ROLE, PlatformFault, client, engine_errors, find_container, streaming_client
from .logs import CappedLog


@dataclass(frozen=True)
class RunSpec:
    submission_id: int
    name: str
    image: str
    forwarder_image: str
    slot: str
    labels: dict[str, str]
    dataset_dir: Path
    export_dir: Path
    gateway_dir: Path
    environment: dict[str, str]
    run_user: str
    forwarder_user: str
    memory: str
    cpus: float
    pids: int
    shm_size: str
    tmp_size: str
    timeout: int
    log_path: Path
    log_max_bytes: int
    silence_timeout: int = 0
    gpu_id: str | None = None
    command: tuple[str, ...] = ("python3", "main.py")
    # Seconds between SIGTERM and SIGKILL when the watchdog stops the run (M2D_STOP_GRACE_SECONDS).
    stop_grace: int = 10


@dataclass
class RunOutcome:
    exit_code: int | None
    oom_killed: bool = False
    timed_out: bool = False
    silent: bool = False
    log_cut: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def container_log_config() -> LogConfig:
    # The engine's own copy of the output is bounded too: a flood cannot fill the host's disk.
    return LogConfig(type=LogConfig.types.JSON, config={"max-size": "10m", "max-file": "1"})


def relay_kwargs(*, image: str, name: str, user: str, socket_dir, mount: str, labels: dict, **extra) -> dict:
    """A relay container (the run's forwarder, a build's door): no network but loopback, where it
    listens; nothing of the host but the read-only folder of the socket it relays to."""
    return dict(
        image=image,
        name=name,
        network_mode="none",
        volumes={str(socket_dir): {"bind": mount, "mode": "ro"}},
        user=user,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        read_only=True,
        mem_limit="64m",
        pids_limit=32,
        labels=labels,
        log_config=container_log_config(),
        detach=True,
        **extra,
    )


def sealed_kwargs(*, user: str, tmp: str, memory: str, cpus: float, pids: int, shm_size: str) -> dict:
    """What every container of researchers' code gets (a run, a serving worker): its own user, no
    capabilities, no new privileges, a read-only root with a capped /tmp, memory = memory + swap,
    CPU, process and shared-memory caps."""
    return dict(
        user=user,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        read_only=True,
        tmpfs={"/tmp": tmp},
        mem_limit=memory,
        memswap_limit=memory,
        nano_cpus=int(cpus * 1e9),
        pids_limit=pids,
        shm_size=shm_size,
    )


def forwarder_kwargs(spec: RunSpec) -> dict:
    return relay_kwargs(
        image=spec.forwarder_image,
        name=f"{spec.name}-fwd",
        user=spec.forwarder_user,
        socket_dir=spec.gateway_dir,
        mount="/gateway",
        labels={**spec.labels, LABEL_ROLE: "forwarder"},
        extra_hosts={"mlflow-server": "127.0.0.1"},
    )


def run_kwargs(spec: RunSpec, forwarder_id: str) -> dict:
    kwargs = dict(
        image=spec.image,
        command=list(spec.command),
        name=spec.name,
        network_mode=f"container:{forwarder_id}",
        volumes={
            str(spec.dataset_dir): {"bind": "/mnt/dataset", "mode": "ro"},
            str(spec.export_dir): {"bind": "/mnt/export", "mode": "rw"},
        },
        working_dir="/opt/submission",
        environment=spec.environment,
        **sealed_kwargs(
            user=spec.run_user,
            tmp=f"rw,nosuid,nodev,exec,size={spec.tmp_size},mode=1777",
            memory=spec.memory,
            cpus=spec.cpus,
            pids=spec.pids,
            shm_size=spec.shm_size,
        ),
        labels={**spec.labels, LABEL_ROLE: "run"},
        log_config=container_log_config(),
        detach=True,
    )
    if spec.gpu_id is not None:
        kwargs["device_requests"] = [DeviceRequest(device_ids=[str(spec.gpu_id)], capabilities=[["gpu"]])]
    return kwargs


@engine_errors
def start_run(spec: RunSpec) -> str:
    """Start the forwarder and the run container; idempotent (a second call starts nothing new).
    Returns the run container's id."""
    existing = find_container(spec.name)
    if existing is not None and existing.status != "created":
        return existing.id
    forwarder = find_container(f"{spec.name}-fwd") or client().containers.create(**forwarder_kwargs(spec))
    forwarder.start()
    # The run container is made while the forwarder boots; it starts once the forwarder listens.
    run = existing or client().containers.create(**run_kwargs(spec, forwarder.id))
    wait_forwarder_ready(forwarder)
    run.start()
    return run.id


def wait_forwarder_ready(forwarder, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if b"ready" in forwarder.logs():
            return
        forwarder.reload()
        if forwarder.status == "exited":
            raise PlatformFault(f"the forwarder {forwarder.name} exited: {forwarder.logs()[-500:]!r}")
        time.sleep(0.02)
    raise PlatformFault(f"the forwarder {forwarder.name} did not start in time")


class _Watchdog(threading.Thread):
    """Stops the run at its wall-clock limit, or when it has printed nothing for too long."""

    def __init__(
        self, container, timeout: float, silence_timeout: float, heartbeat=None, heartbeat_seconds=10.0, grace=10
    ):
        super().__init__(daemon=True)
        self.container, self.timeout, self.silence_timeout, self.grace = container, timeout, silence_timeout, grace
        self.heartbeat, self.heartbeat_seconds = heartbeat, heartbeat_seconds
        self.started = self.last_output = self.last_beat = time.monotonic()
        self.timed_out = threading.Event()
        self.silent = threading.Event()
        self.done = threading.Event()

    def output_seen(self) -> None:
        self.last_output = time.monotonic()

    def run(self) -> None:
        while not self.done.wait(0.5):
            now = time.monotonic()
            if self.heartbeat is not None and now - self.last_beat >= self.heartbeat_seconds:
                self.last_beat = now
                try:
                    self.heartbeat()
                except Exception:  # a missed beat only delays nothing; the next one follows
                    pass
            if now - self.started >= self.timeout:
                self.timed_out.set()
            elif now - self.last_output >= self.silence_timeout:
                self.silent.set()
            else:
                continue
            try:
                self.container.stop(timeout=self.grace)
            except (NotFound, APIError, requests.RequestException):
                pass
            return


@engine_errors
def run_exists(name: str) -> bool:
    return find_container(name) is not None


@engine_errors
def run_is_running(name: str) -> bool:
    container = find_container(name)
    return container is not None and container.attrs.get("State", {}).get("Running", False)


@engine_errors
def wait_run(spec: RunSpec, heartbeat=None, heartbeat_seconds: float = 10.0) -> RunOutcome:
    """Follow the run's output into its capped log until it exits or the watchdog stops it."""
    started = time.monotonic()
    container = client().containers.get(spec.name)
    watchdog = _Watchdog(
        container, spec.timeout, spec.silence_timeout or spec.timeout, heartbeat, heartbeat_seconds, spec.stop_grace
    )
    watchdog.start()
    log = CappedLog(spec.log_path, spec.log_max_bytes)
    api = streaming_client(spec.timeout + 120)
    try:
        try:
            for chunk in api.logs(container.id, stream=True, follow=True, stdout=True, stderr=True):
                watchdog.output_seen()
                log.write(chunk)
        except Exception as exc:  # the engine went away mid-stream (restart, crash)
            raise PlatformFault(f"the Docker engine dropped the run's output: {exc}") from exc
        result = api.wait(container.id)
        if log.cut:
            log.replace_tail(api.logs(container.id, stdout=True, stderr=True, tail=2000))
    finally:
        watchdog.done.set()
        log.close()
        api.close()
    container.reload()
    state = container.attrs["State"]
    return RunOutcome(
        exit_code=result.get("StatusCode", state.get("ExitCode")),
        oom_killed=bool(state.get("OOMKilled")),
        timed_out=watchdog.timed_out.is_set(),
        silent=watchdog.silent.is_set(),
        log_cut=log.cut,
        seconds=time.monotonic() - started,
    )


@engine_errors
def remove_run(name: str) -> None:
    for container_name in (name, f"{name}-fwd"):
        container = find_container(container_name)
        if container is not None:
            try:
                container.remove(force=True)
            except NotFound:
                pass


@engine_errors
def stop_run(name: str, grace: int = 10) -> None:
    container = find_container(name)
    if container is not None:
        container.stop(timeout=grace)


@engine_errors
def container_gpus(name: str) -> list[str]:
    """The GPUs the engine handed a run container (its device requests)."""
    container = find_container(name)
    if container is None:
        return []
    requests_ = container.attrs.get("HostConfig", {}).get("DeviceRequests") or []
    return [device for request in requests_ for device in (request.get("DeviceIDs") or [])]
