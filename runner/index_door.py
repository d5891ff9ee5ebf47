"""A build's one way out: the platform's package index, and nothing else.

A build's RUN steps share the network namespace of a door container (the run forwarder's image)
that has no network but loopback: 127.0.0.1:3141 inside it relays to a unix socket, and this
module relays that socket to the package index. The build has no route to the host's addresses,
the database, Redis, MLflow, the LAN or anywhere else: there is nothing to connect to but the
index, which refuses every change unless its root signs in.

Each worker process keeps one door between its builds (see `opened`); a door left by a process
that was killed is removed by the next process of the host that opens one, and by the instance's
clean-up like everything else labelled with it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import re
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from celery import signals
from django.conf import settings

from . import docker_api
from .naming import labels_for_build

log = logging.getLogger(__name__)
DOOR_PORT = 3141
CHUNK = 64 * 1024


def build_index_url() -> str:
    """The index as the build sees it: on its own loopback, through the door."""
    path = urlsplit(settings.M2D_PACKAGE_INDEX_URL).path or "/"
    return f"http://127.0.0.1:{DOOR_PORT}{path}"


class Relay:
    """Unix socket -> the package index's TCP address, byte for byte, on a thread of its own."""

    def __init__(self, socket_path: Path, host: str, port: int, socket_uid: int | None):
        self.socket_path, self.host, self.port, self.socket_uid = socket_path, host, port, socket_uid
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="index-door", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)

    async def _serve(self) -> asyncio.AbstractServer:
        server = await asyncio.start_unix_server(self._handle, str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        if self.socket_uid is not None:
            os.chown(self.socket_path, self.socket_uid, -1)
        return server

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            log.warning("the package index at %s:%s is unreachable: %s", self.host, self.port, exc)
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self.socket_path.unlink(missing_ok=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


LABEL_KEEPER = "org.m2d.door-keeper"  # host:pid of the worker process that keeps the door


class Door:
    """A relay to the index and the container whose loopback it listens on."""

    def __init__(self, name: str, folder: Path, labels: dict[str, str]):
        self.name, self.folder, self.labels = name, folder, labels
        self.relay: Relay | None = None
        self.container_id = ""
        self.pid = os.getpid()

    def open(self) -> Door:
        index = urlsplit(settings.M2D_PACKAGE_INDEX_URL)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.folder.chmod(0o755)
        self.relay = Relay(
            self.folder / "index.sock",
            index.hostname or "127.0.0.1",
            index.port or (443 if index.scheme == "https" else 80),
            settings.M2D_FORWARDER_UID if os.geteuid() == 0 else None,
        )
        self.relay.start()
        try:
            # One left by a worker that died holds the old socket folder: never reuse it.
            docker_api.remove_door(self.name)
            self.container_id = docker_api.start_door(
                docker_api.DoorSpec(
                    name=self.name,
                    image=settings.M2D_FORWARDER_IMAGE,
                    socket_dir=self.folder,
                    port=DOOR_PORT,
                    user=f"{settings.M2D_FORWARDER_UID}:{settings.M2D_FORWARDER_UID}",
                    labels=self.labels,
                )
            )
        except BaseException:
            self.close()
            raise
        return self

    def standing(self) -> bool:
        if self.relay is None or not self.relay.alive() or not (self.folder / "index.sock").is_socket():
            return False
        try:
            return docker_api.door_running(self.container_id)
        except docker_api.PlatformFault:
            return False

    def close(self) -> None:
        with contextlib.suppress(docker_api.PlatformFault):
            docker_api.remove_door(self.name)
        if self.relay is not None:
            self.relay.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


# The door this worker process keeps between builds: starting one costs a container start, about a
# tenth of a warm build. Builds of one process use it one at a time, so no two builds ever share a
# loopback; a build that ends any other way than with its image may have left a step running in
# that namespace, so its door is closed, and the next build gets a fresh one.
_kept: Door | None = None
_kept_lock = threading.Lock()


@contextlib.contextmanager
def opened(submission_id: int, purpose: str = "build") -> Iterator[str]:
    """The network mode a build of `submission_id` runs its steps in: the door's, or no network at
    all when no package index is configured."""
    if not settings.M2D_PACKAGE_INDEX_URL:
        yield "none"
        return
    if not _kept_lock.acquire(blocking=False):
        # Another build of this process holds the kept door: this one gets a door of its own.
        door = Door(
            f"m2d-{settings.M2D_INSTANCE}-{purpose}-{submission_id}-door",
            settings.M2D_GATEWAY_DIR / f"{purpose}-{submission_id}",
            labels_for_build(submission_id),
        ).open()
        try:
            yield f"container:{door.container_id}"
        finally:
            door.close()
        return
    try:
        door = _kept_door()
        try:
            yield f"container:{door.container_id}"
        except BaseException:
            close_kept_door()
            raise
    finally:
        _kept_lock.release()


def _kept_door() -> Door:
    global _kept
    if _kept is not None and _kept.standing():
        return _kept
    close_kept_door()
    keeper = f"{socket.gethostname()}:{os.getpid()}"
    _sweep_doors_of_dead_keepers()
    _kept = Door(
        f"m2d-{settings.M2D_INSTANCE}-door-{_name_part(socket.gethostname())}-{os.getpid()}",
        settings.M2D_GATEWAY_DIR / f"door-{os.getpid()}",
        {docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE, LABEL_KEEPER: keeper},
    ).open()
    return _kept


def close_kept_door() -> None:
    """Close this process's kept door, if it has one (at exit, or when it can no longer be trusted)."""
    global _kept
    door, _kept = _kept, None
    if door is not None and door.pid == os.getpid():  # a forked child must not close its parent's
        door.close()


def _sweep_doors_of_dead_keepers() -> None:
    """Doors kept by processes of this host that are gone (killed before they could close them)."""
    remove_doors_kept_by(lambda pid: pid != os.getpid() and not _alive(pid))


def remove_doors_kept_by(keepers: Callable[[int], bool]) -> None:
    """Remove, with their folders, the doors of this instance kept by the processes of this host
    whose pid `keepers` accepts."""
    host = socket.gethostname()
    for name, labels in docker_api.doors_labelled({docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE}):
        keeper_host, _, pid = labels.get(LABEL_KEEPER, "").rpartition(":")
        if keeper_host == host and pid.isdigit() and keepers(int(pid)):
            docker_api.remove_door(name)
            shutil.rmtree(settings.M2D_GATEWAY_DIR / f"door-{pid}", ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _name_part(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", text)[:40] or "host"


atexit.register(close_kept_door)
# Pool processes end with os._exit, which runs no atexit handler.
signals.worker_process_shutdown.connect(lambda **kwargs: close_kept_door(), weak=False)
