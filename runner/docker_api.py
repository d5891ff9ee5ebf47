"""The narrow interface between the platform and the Docker engine.

This package is the only one that imports `docker`. Callers hand over frozen specs and get plain
results back; engine trouble surfaces as `PlatformFault`, never as the researcher's error.
Everything created carries labels, so a restarted worker can find what it left behind.
"""

from __future__ import annotations

import functools
import io
import os
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest, LogConfig

LABEL_ROLE = "org.m2d.role"
LABEL_SUBMISSION = "org.m2d.submission"
LABEL_INSTANCE = "org.m2d.instance"
LABEL_SLOT = "org.m2d.slot"
API_TIMEOUT = 60


def engine_url() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


class PlatformFault(RuntimeError):
    """The engine is down or misbehaved: not the researcher's fault."""


class BuildFailed(RuntimeError):
    def __init__(self, message: str, log: str):
        super().__init__(message)
        self.log = log


@functools.cache
def client() -> docker.DockerClient:
    try:
        return docker.DockerClient(base_url=engine_url(), version="auto", timeout=API_TIMEOUT)
    except DockerException as exc:
        raise PlatformFault(f"the Docker engine is not reachable: {exc}") from exc


def streaming_client(timeout: float) -> docker.APIClient:
    """A client for long streams (build output, run logs) that stay silent for long stretches."""
    try:
        return docker.APIClient(base_url=engine_url(), version="auto", timeout=timeout)
    except DockerException as exc:
        raise PlatformFault(f"the Docker engine is not reachable: {exc}") from exc


def engine_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise PlatformFault(f"the Docker engine stopped answering: {exc}") from exc
        except APIError as exc:
            if exc.status_code and exc.status_code >= 500:
                raise PlatformFault(f"the Docker engine failed: {exc.explanation or exc}") from exc
            raise
        except DockerException as exc:
            raise PlatformFault(f"the Docker engine is not reachable: {exc}") from exc

    return wrapper


class CappedLog:
    """Keeps a stream's bytes in a file up to a cap, with a marker where it was cut."""

    def __init__(self, path: Path, max_bytes: int):
        self.path, self.max_bytes, self.written, self.cut = path, max_bytes, 0, False
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, data: bytes) -> None:
        if self.cut:
            return
        room = self.max_bytes - self.written
        if len(data) > room:
            self._file.write(data[:room])
            self._file.write(f"\n[log cut here: it passed the limit of {self.max_bytes} bytes]\n".encode())
            self.cut = True
            self.written = self.max_bytes
        else:
            self._file.write(data)
            self.written += len(data)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def tail(path: Path, lines: int, max_bytes: int = 16384) -> str:
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(0, io.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - max_bytes))
        text = f.read().decode("utf-8", "replace")
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


# --- build ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildSpec:
    submission_id: int
    archive: Path
    dockerfile: Path
    unpack_script: Path
    runtime_image: str
    tag: str
    labels: dict[str, str]
    log_path: Path
    timeout: int
    log_max_bytes: int


def _build_context(spec: BuildSpec) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(spec.dockerfile, arcname="Dockerfile")
        tar.add(spec.unpack_script, arcname="docker_scripts/unpack_submission.py")
        tar.add(spec.archive, arcname="submission.zip")
    buffer.seek(0)
    return buffer


@engine_errors
def build_image(spec: BuildSpec) -> str:
    """Build the submission image; returns its id. Raises BuildFailed with the log on failure."""
    api = streaming_client(spec.timeout + 30)
    log = CappedLog(spec.log_path, spec.log_max_bytes)
    image_id, error = None, None
    deadline = time.monotonic() + spec.timeout
    try:
        stream = api.build(
            fileobj=_build_context(spec),
            custom_context=True,
            tag=spec.tag,
            rm=True,
            forcerm=True,
            decode=True,
            labels=spec.labels,
            buildargs={"RUNTIME_IMAGE": spec.runtime_image},
            timeout=spec.timeout + 30,
        )
        for chunk in stream:
            if "stream" in chunk:
                log.write(chunk["stream"].encode())
            if "error" in chunk:
                error = chunk["error"].strip()
                log.write(f"{error}\n".encode())
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"the build took longer than {spec.timeout} s")
    finally:
        log.close()
        api.close()
    if error or not image_id:
        raise BuildFailed(error or "the build produced no image", tail(spec.log_path, 60))
    return image_id


@engine_errors
def remove_image(tag_or_id: str) -> None:
    try:
        client().images.remove(tag_or_id, force=True, noprune=False)
    except (ImageNotFound, NotFound):
        pass


# --- run -----------------------------------------------------------------------------------------


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
    gpu_id: str | None = None
    command: tuple[str, ...] = ("python3", "main.py")


@dataclass
class RunOutcome:
    exit_code: int | None
    oom_killed: bool = False
    timed_out: bool = False
    log_cut: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _container_log_config() -> LogConfig:
    # The engine's own copy of the output is bounded too: a flood cannot fill the host's disk.
    return LogConfig(type=LogConfig.types.JSON, config={"max-size": "10m", "max-file": "1"})


def forwarder_kwargs(spec: RunSpec) -> dict:
    return dict(
        image=spec.forwarder_image,
        name=f"{spec.name}-fwd",
        network_mode="none",
        extra_hosts={"mlflow-server": "127.0.0.1"},
        volumes={str(spec.gateway_dir): {"bind": "/gateway", "mode": "ro"}},
        user=spec.forwarder_user,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        read_only=True,
        mem_limit="64m",
        pids_limit=32,
        labels={**spec.labels, LABEL_ROLE: "forwarder"},
        log_config=_container_log_config(),
        detach=True,
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
        user=spec.run_user,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        read_only=True,
        tmpfs={"/tmp": f"rw,nosuid,nodev,exec,size={spec.tmp_size},mode=1777"},
        mem_limit=spec.memory,
        memswap_limit=spec.memory,
        nano_cpus=int(spec.cpus * 1e9),
        pids_limit=spec.pids,
        shm_size=spec.shm_size,
        labels={**spec.labels, LABEL_ROLE: "run"},
        log_config=_container_log_config(),
        detach=True,
    )
    if spec.gpu_id is not None:
        kwargs["device_requests"] = [DeviceRequest(device_ids=[str(spec.gpu_id)], capabilities=[["gpu"]])]
    return kwargs


def _existing(name: str):
    try:
        return client().containers.get(name)
    except NotFound:
        return None


@engine_errors
def start_run(spec: RunSpec) -> str:
    """Start the forwarder and the run container; idempotent (a second call starts nothing new).
    Returns the run container's id."""
    existing = _existing(spec.name)
    if existing is not None:
        return existing.id
    forwarder = _existing(f"{spec.name}-fwd") or client().containers.create(**forwarder_kwargs(spec))
    forwarder.start()
    _wait_forwarder_ready(forwarder)
    run = client().containers.create(**run_kwargs(spec, forwarder.id))
    run.start()
    return run.id


def _wait_forwarder_ready(forwarder, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if b"ready" in forwarder.logs():
            return
        forwarder.reload()
        if forwarder.status == "exited":
            raise PlatformFault(f"the tracking forwarder exited: {forwarder.logs()[-500:]!r}")
        time.sleep(0.02)
    raise PlatformFault("the tracking forwarder did not start in time")


@engine_errors
def wait_run(spec: RunSpec) -> RunOutcome:
    """Follow the run's output into its capped log until it exits, or stop it at the time limit."""
    started = time.monotonic()
    container = client().containers.get(spec.name)
    timed_out = threading.Event()

    def stop_at_deadline() -> None:
        timed_out.set()
        try:
            container.stop(timeout=10)
        except (NotFound, APIError):
            pass

    watchdog = threading.Timer(spec.timeout, stop_at_deadline)
    watchdog.daemon = True
    watchdog.start()
    log = CappedLog(spec.log_path, spec.log_max_bytes)
    api = streaming_client(spec.timeout + 120)
    try:
        for chunk in api.logs(container.id, stream=True, follow=True, stdout=True, stderr=True):
            log.write(chunk)
        result = api.wait(container.id)
    finally:
        watchdog.cancel()
        log.close()
        api.close()
    container.reload()
    state = container.attrs["State"]
    return RunOutcome(
        exit_code=result.get("StatusCode", state.get("ExitCode")),
        oom_killed=bool(state.get("OOMKilled")),
        timed_out=timed_out.is_set(),
        log_cut=log.cut,
        seconds=time.monotonic() - started,
    )


@engine_errors
def remove_run(name: str) -> None:
    for container_name in (name, f"{name}-fwd"):
        container = _existing(container_name)
        if container is not None:
            try:
                container.remove(force=True)
            except NotFound:
                pass


@engine_errors
def stop_run(name: str, grace: int = 10) -> None:
    container = _existing(name)
    if container is not None:
        container.stop(timeout=grace)


@engine_errors
def list_labelled(instance: str) -> list:
    return client().containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"})
