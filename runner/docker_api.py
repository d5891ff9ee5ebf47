"""The narrow interface between the platform and the Docker engine.

This package is the only one that imports `docker`. Callers hand over frozen specs and get plain
results back; engine trouble surfaces as `PlatformFault`, never as the researcher's error.
Everything created carries labels, so a restarted worker can find what it left behind.
"""

from __future__ import annotations

import collections
import functools
import io
import os
import posixpath
import re
import tarfile
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest, LogConfig
from docker.utils import parse_bytes

from . import recipe

LABEL_ROLE = "org.m2d.role"
LABEL_SUBMISSION = "org.m2d.submission"
LABEL_INSTANCE = "org.m2d.instance"
LABEL_SLOT = "org.m2d.slot"
API_TIMEOUT = 60
# A build context up to this size stays in memory; a bigger one goes to a temporary file.
CONTEXT_IN_MEMORY_BYTES = 32 * 1024**2


def engine_url() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


class PlatformFault(RuntimeError):
    """The engine is down or misbehaved: not the researcher's fault."""


class BuildCancelled(RuntimeError):
    """The build was stopped because its submission was cancelled."""


class CacheLayerLost(PlatformFault):
    """A cached layer the build stood on was removed under it (an image clean-up on the same
    engine): nothing to do with the submission; building again takes another path."""


# What the engine says when that happens.
LOST_LAYER = re.compile(
    r"unknown parent image ID|failed to set parent|No such image: sha256:|failed to get digest sha256:"
)


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
    """Keeps a stream within a byte cap: its head and its tail (where the traceback is), with a
    marker saying how much was cut between them. Memory stays bounded by half the cap."""

    def __init__(self, path: Path, max_bytes: int):
        self.path, self.head_room, self.tail_room = path, max_bytes // 2, max_bytes - max_bytes // 2
        self.head_written, self.cut_bytes = 0, 0
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_size = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()

    @property
    def cut(self) -> bool:
        return self.cut_bytes > 0

    def replace_tail(self, data: bytes) -> None:
        """Take the engine's own copy of the last output as the tail: a follower can lose lines
        while the engine rotates the log of a flood, the engine's copy of the end is whole."""
        seen = self.cut_bytes + self._tail_size
        data = data[-self.tail_room :]
        self._tail = collections.deque([data])
        self._tail_size = len(data)
        self.cut_bytes = max(seen - len(data), 1)

    def write(self, data: bytes) -> None:
        if self.head_written < self.head_room:
            taken = data[: self.head_room - self.head_written]
            self._file.write(taken)
            self._file.flush()
            self.head_written += len(taken)
            data = data[len(taken) :]
        if not data:
            return
        self._tail.append(data)
        self._tail_size += len(data)
        while self._tail_size > self.tail_room:
            oldest = self._tail.popleft()
            excess = self._tail_size - self.tail_room
            if len(oldest) > excess:
                self._tail.appendleft(oldest[excess:])
                oldest = oldest[:excess]
            self._tail_size -= len(oldest)
            self.cut_bytes += len(oldest)

    def close(self) -> None:
        if self.cut:
            self._file.write(
                f"\n[... {self.cut_bytes} bytes of output cut here: the log keeps its first and "
                f"last {self.head_room + self.tail_room} bytes ...]\n".encode()
            )
        for chunk in self._tail:
            self._file.write(chunk)
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
    runtime_image: str
    tag: str
    labels: dict[str, str]
    log_path: Path
    timeout: int
    log_max_bytes: int
    memory: str = "4g"


def _build_context(spec: BuildSpec) -> IO[bytes]:
    """The recipe and the submission's files, unpacked from its checked zip (see runner.recipe)."""
    context = tempfile.SpooledTemporaryFile(max_size=CONTEXT_IN_MEMORY_BYTES)  # noqa: SIM115 (build_image closes it)
    recipe.write_context(context, recipe.platform_recipe(spec.dockerfile.read_text(), spec.labels), spec.archive)
    context.seek(0)
    return context


@engine_errors
def build_image(spec: BuildSpec, should_stop=None) -> str:
    """Build the submission image; returns its id. Raises BuildFailed with the log on failure,
    TimeoutError past the time limit, BuildCancelled when `should_stop()` turns true."""
    api = streaming_client(spec.timeout + 30)
    log = CappedLog(spec.log_path, spec.log_max_bytes)
    image_id, error = None, None
    deadline = time.monotonic() + spec.timeout
    stopped: list[str] = []
    finished = threading.Event()

    def watch() -> None:
        # Closing the connection makes the engine abandon the build, even a silent one.
        while not finished.wait(1.0):
            if time.monotonic() > deadline:
                stopped.append("timeout")
            elif should_stop is not None and should_stop():
                stopped.append("cancelled")
            else:
                continue
            api.close()
            return

    try:
        context = _build_context(spec)
    except (recipe.RecipeError, zipfile.BadZipFile, OSError) as exc:
        api.close()
        log.close()
        raise PlatformFault(f"the build context could not be made: {exc}") from exc
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        stream = api.build(
            fileobj=context,
            custom_context=True,
            tag=spec.tag,
            rm=True,
            forcerm=True,
            decode=True,
            buildargs={"RUNTIME_IMAGE": spec.runtime_image},
            container_limits={"memory": parse_bytes(spec.memory), "memswap": parse_bytes(spec.memory)},
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
    except Exception:
        if not stopped:
            raise
    finally:
        finished.set()
        log.close()
        api.close()
        context.close()
    if stopped == ["timeout"]:
        raise TimeoutError(f"the build took longer than its limit of {spec.timeout} s")
    if stopped == ["cancelled"]:
        raise BuildCancelled("the submission was cancelled during its build")
    if error and LOST_LAYER.search(error):
        raise CacheLayerLost(error)
    if error or not image_id:
        raise BuildFailed(error or "the build produced no image", tail(spec.log_path, 60))
    return image_id


@engine_errors
def image_exists(image: str) -> bool:
    try:
        client().images.get(image)
        return True
    except (ImageNotFound, NotFound):
        return False


@engine_errors
def remove_image(tag_or_id: str) -> None:
    """Remove a submission image and its own layers (code, settings, labels), but keep the last
    layer a RUN step made: the installed requirements, which the next submission with the same
    requirements.txt reuses. (Pruning every untagged parent made each resubmission reinstall,
    and failed builds that had just found that layer in the cache.) prune_build_cache() ages
    out what is kept."""
    try:
        image = client().images.get(tag_or_id)
        client().images.remove(image.id, force=True, noprune=True)
    except (ImageNotFound, NotFound):
        return
    parent_id = image.attrs.get("Parent")
    while parent_id:
        try:
            parent = client().images.get(parent_id)
        except (ImageNotFound, NotFound):
            return
        step = " ".join((parent.attrs.get("ContainerConfig") or {}).get("Cmd") or [])
        if parent.tags or "#(nop)" not in step:
            return  # a named image, or a RUN step's layer (or one we cannot tell): keep it
        parent_id = parent.attrs.get("Parent")
        try:
            client().images.remove(parent.id, noprune=True)
        except (ImageNotFound, NotFound):
            return
        except APIError as exc:
            if exc.status_code == 409:  # another image grew from it: it is shared, keep it
                return
            raise
        if re.search(r"#\(nop\)\s+(COPY|ADD)\b", step):
            # The submission's own files. What lies below (the image settings on top of the
            # requirements) is the cache of every build with the same requirements.txt: a build
            # may be using it right now, and would fail if it went ("unknown parent image ID").
            return


@engine_errors
def prune_build_cache(older_than_seconds: int) -> int:
    """Remove untagged image layers left by builds (requirements layers, unpack stages) older
    than the limit; returns the bytes freed."""
    report = client().images.prune(filters={"dangling": True, "until": f"{older_than_seconds}s"})
    return int(report.get("SpaceReclaimed") or 0)


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
    silence_timeout: int = 0
    gpu_id: str | None = None
    command: tuple[str, ...] = ("python3", "main.py")


@dataclass
class RunOutcome:
    exit_code: int | None
    oom_killed: bool = False
    timed_out: bool = False
    silent: bool = False
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
    if existing is not None and existing.status != "created":
        return existing.id
    forwarder = _existing(f"{spec.name}-fwd") or client().containers.create(**forwarder_kwargs(spec))
    forwarder.start()
    # The run container is made while the forwarder boots; it starts once the forwarder listens.
    run = existing or client().containers.create(**run_kwargs(spec, forwarder.id))
    _wait_forwarder_ready(forwarder)
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


class _Watchdog(threading.Thread):
    """Stops the run at its wall-clock limit, or when it has printed nothing for too long."""

    def __init__(self, container, timeout: float, silence_timeout: float, heartbeat=None, heartbeat_seconds=10.0):
        super().__init__(daemon=True)
        self.container, self.timeout, self.silence_timeout = container, timeout, silence_timeout
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
                self.container.stop(timeout=10)
            except (NotFound, APIError, requests.RequestException):
                pass
            return


@engine_errors
def run_exists(name: str) -> bool:
    return _existing(name) is not None


def wait_for_engine(timeout: float) -> bool:
    """Wait for the engine to answer again (after a restart); True once it does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            api = docker.APIClient(base_url=engine_url(), version="auto", timeout=5)
            try:
                if api.ping():
                    return True
            finally:
                api.close()
        except (DockerException, requests.RequestException):
            pass
        time.sleep(1)
    return False


@engine_errors
def run_is_running(name: str) -> bool:
    container = _existing(name)
    return container is not None and container.attrs.get("State", {}).get("Running", False)


@engine_errors
def wait_run(spec: RunSpec, heartbeat=None, heartbeat_seconds: float = 10.0) -> RunOutcome:
    """Follow the run's output into its capped log until it exits or the watchdog stops it."""
    started = time.monotonic()
    container = client().containers.get(spec.name)
    watchdog = _Watchdog(container, spec.timeout, spec.silence_timeout or spec.timeout, heartbeat, heartbeat_seconds)
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
def list_labelled(instance: str, submission_id: int | None = None) -> list:
    labels = [f"{LABEL_INSTANCE}={instance}"]
    if submission_id is not None:
        labels.append(f"{LABEL_SUBMISSION}={submission_id}")
    return client().containers.list(all=True, filters={"label": labels})


@engine_errors
def remove_build_leftovers(instance: str, submission_id: int) -> None:
    """A build stopped half-way (cancelled, timed out, its worker gone) can leave its
    intermediate containers behind; none of the submission's containers may outlive its build."""
    for container in list_labelled(instance, submission_id):
        if container.status != "running":
            try:
                container.remove(force=True)
            except NotFound:
                pass


# --- provenance ----------------------------------------------------------------------------------


@engine_errors
def describe_image(ref: str) -> dict | None:
    """An image's identity: its id (the digest of its configuration), registry digests and layers."""
    try:
        image = client().images.get(ref)
    except (ImageNotFound, NotFound):
        return None
    return {
        "id": image.id,
        "repo_digests": image.attrs.get("RepoDigests") or [],
        "layers": image.attrs.get("RootFS", {}).get("Layers") or [],
        "created": image.attrs.get("Created", ""),
    }


@engine_errors
def read_image_files(
    image: str, paths: list[str], labels: dict[str, str], max_bytes: int = 4 * 1024**2, container_name: str = ""
) -> dict:
    """The contents of files of one folder inside an image; a missing file maps to None. Read from
    the run's own container when it is given and still there (its root file system was read-only,
    so the files are the image's), else from a container created for it but never started. The
    folder comes in one request (each costs the engine tens of milliseconds), and no more than
    `max_bytes` of it is read."""
    folders = {posixpath.dirname(path) for path in paths}
    if len(folders) != 1:
        raise ValueError(f"the paths must share one folder: {paths}")
    folder = folders.pop()
    existing = _existing(container_name) if container_name else None
    container = existing or client().containers.create(
        image, command=["true"], labels={**labels, LABEL_ROLE: "inspect"}
    )
    found: dict[str, bytes | None] = dict.fromkeys(paths)
    try:
        try:
            stream, _ = container.get_archive(folder)
        except NotFound:
            return found
        archive = io.BytesIO()
        for chunk in stream:
            archive.write(chunk)
            if archive.tell() > max_bytes:
                break  # the files sought are small; the folder may hold more (a build wrote there)
        archive.seek(0)
        base = posixpath.basename(folder.rstrip("/"))
        wanted = {f"{base}/{posixpath.basename(path)}": path for path in paths}
        try:
            with tarfile.open(fileobj=archive) as tar:
                for member in tar:
                    if member.name in wanted and member.isfile():
                        found[wanted[member.name]] = tar.extractfile(member).read()
        except tarfile.ReadError:  # cut short at max_bytes: what was read before stands
            pass
    finally:
        if existing is None:
            container.remove(force=True)
    return found


@engine_errors
def container_gpus(name: str) -> list[str]:
    """The GPUs the engine handed a run container (its device requests)."""
    container = _existing(name)
    if container is None:
        return []
    requests_ = container.attrs.get("HostConfig", {}).get("DeviceRequests") or []
    return [device for request in requests_ for device in (request.get("DeviceIDs") or [])]
