"""Submission images: built from the checked zip, removed without losing the shared requirements
layer, described and read for provenance."""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from docker import constants
from docker.errors import APIError, ImageNotFound, NotFound
from docker.utils import parse_bytes

from .. import recipe
from .engine import LABEL_ROLE, PlatformFault, client, engine_errors, list_labelled, streaming_client
from .logs import CappedLog, tail

# A build context up to this size stays in memory; a bigger one goes to a temporary file.
CONTEXT_IN_MEMORY_BYTES = 32 * 1024**2
# The engine's build endpoint takes a CPU quota for the build's steps; the SDK's list of limits
# predates it.
for _key in ("cpuperiod", "cpuquota"):
    if _key not in constants.CONTAINER_LIMITS_KEYS:
        constants.CONTAINER_LIMITS_KEYS.append(_key)
CPU_PERIOD = 100_000
RUNNING_STEP = re.compile(r"^ ---> Running in ([0-9a-f]{12,64})\s*$", re.MULTILINE)


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
    cpus: float = 2.0
    max_bytes: int = 8 * 1024**3  # what the build may add to the image
    network: str = "none"  # its steps' network: none, or a door's (container:<id>)
    build_args: dict[str, str] = field(default_factory=dict)


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
    step: list[str] = []  # the container of the step that runs now

    def watch() -> None:
        # Closing the connection makes the engine abandon the build, even a silent one.
        while not finished.wait(1.0):
            if time.monotonic() > deadline:
                stopped.append("timeout")
            elif should_stop is not None and should_stop():
                stopped.append("cancelled")
            elif step and _written_by(step[-1]) > spec.max_bytes:
                stopped.append("size")
            else:
                continue
            # The step may be blocked on its way out (a package index that does not answer): closing
            # the connection alone leaves it there, so it is killed, and the engine ends the build.
            if step:
                _kill_quietly(step[-1])
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
            buildargs={"RUNTIME_IMAGE": spec.runtime_image, **spec.build_args},
            container_limits={
                "memory": parse_bytes(spec.memory),
                "memswap": parse_bytes(spec.memory),
                "cpuperiod": CPU_PERIOD,
                "cpuquota": int(spec.cpus * CPU_PERIOD),
            },
            network_mode=spec.network,
            timeout=spec.timeout + 30,
        )
        for chunk in stream:
            if "stream" in chunk:
                log.write(chunk["stream"].encode())
                step.extend(RUNNING_STEP.findall(chunk["stream"]))
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
        raise TimeoutError(f"the build took longer than its limit of {spec.timeout} s (M2D_BUILD_TIMEOUT)")
    if stopped == ["cancelled"]:
        raise BuildCancelled("the submission was cancelled during its build")
    if stopped == ["size"]:
        raise BuildFailed(
            f"the build wrote more than its limit of {spec.max_bytes / 1024**2:,.0f} MiB (M2D_BUILD_MAX_BYTES)",
            tail(spec.log_path, 60),
        )
    if error and LOST_LAYER.search(error):
        raise CacheLayerLost(error)
    if error or not image_id:
        raise BuildFailed(error or "the build produced no image", tail(spec.log_path, 60))
    added = _added_bytes(image_id, spec.runtime_image)
    if added > spec.max_bytes:
        remove_image(image_id)
        raise BuildFailed(
            f"the build added {added / 1024**2:,.0f} MiB to the image, more than its limit of "
            f"{spec.max_bytes / 1024**2:,.0f} MiB (M2D_BUILD_MAX_BYTES)",
            tail(spec.log_path, 60),
        )
    return image_id


def _added_bytes(image_id: str, base: str) -> int:
    """How much bigger the image is than the runtime image it grew from."""
    try:
        return int(client().images.get(image_id).attrs["Size"]) - int(client().images.get(base).attrs["Size"])
    except (ImageNotFound, NotFound, KeyError):
        return 0


def _written_by(container_id: str) -> int:
    """Bytes a build step's container has written so far (0 once it is gone)."""
    try:
        found = client().api.containers(all=True, filters={"id": container_id}, size=True)
    except Exception:
        return 0
    return int(found[0].get("SizeRw") or 0) if found else 0


def _kill_quietly(container_id: str) -> None:
    try:
        client().api.kill(container_id)
    except Exception:
        pass


@engine_errors
def image_exists(image: str) -> bool:
    if not image:  # never built (or its record was cleared): nothing to look up
        return False
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


# A file read from an image for the record (a pip freeze) is cut after this many bytes.
IMAGE_FILE_MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class ImageFile:
    """A file of an image as read_image_files found it: its first bytes, or why it was not read."""

    data: bytes = b""
    size: int = 0  # in the image; more than len(data) when it was cut
    refused: str = ""  # "not in the image", "a link to …, not followed", "not a regular file (…)"

    @property
    def truncated(self) -> bool:
        return len(self.data) < self.size


@engine_errors
def read_image_files(
    image: str, paths: list[str], labels: dict[str, str], max_bytes: int = IMAGE_FILE_MAX_BYTES
) -> dict[str, ImageFile]:
    """Regular files of an image, each up to `max_bytes`, from a container created from it and
    never started: no code of the image runs and nothing is mounted, so what is read is what the
    build wrote. A link is refused, not followed, as is anything else that is not a regular file."""
    container = client().containers.create(
        image, command=["true"], network_disabled=True, labels={**labels, LABEL_ROLE: "inspect"}
    )
    try:
        return {path: read_regular_file(container.get_archive, path, max_bytes) for path in paths}
    finally:
        container.remove(force=True, v=True)


def read_regular_file(get_archive, path: str, max_bytes: int) -> ImageFile:
    """One file from the engine's archive of `path` (`get_archive(path)` -> (chunks, stat)),
    reading no further into the stream than the file's first `max_bytes`."""
    try:
        chunks, _ = get_archive(path)
    except NotFound:
        return ImageFile(refused="not in the image")
    try:
        with tarfile.open(fileobj=_ChunkReader(chunks), mode="r|") as tar:
            member = tar.next()
            if member is None:
                return ImageFile(refused="not in the image")
            if member.issym() or member.islnk():
                return ImageFile(refused=f"a link to {member.linkname}, not followed")
            if not member.isreg():
                return ImageFile(refused="not a regular file (a folder or a device)")
            reader = tar.extractfile(member)
            return ImageFile(data=reader.read(max_bytes) if reader else b"", size=member.size)
    finally:
        getattr(chunks, "close", lambda: None)()


class _ChunkReader(io.RawIOBase):
    """A file over the engine's stream of chunks, read only as far as asked."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._left:
            self._left = next(self._chunks, b"")
        count = min(len(buffer), len(self._left))
        buffer[:count] = self._left[:count]
        self._left = self._left[count:]
        return count
