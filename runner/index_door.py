"""A build's one way out: the platform's package index, and nothing else.

A build's RUN steps share the network namespace of a door container (the run forwarder's image)
that has no network but loopback: 127.0.0.1:3141 inside it relays to a unix socket, and this
module relays that socket to the package index. The build has no route to the host's addresses,
the database, Redis, MLflow, the LAN or anywhere else: there is nothing to connect to but the
index, which refuses every change unless its root signs in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

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


@contextlib.contextmanager
def opened(submission_id: int, purpose: str = "build") -> Iterator[str]:
    """The network mode a build of `submission_id` runs its steps in: the door's, or no network at
    all when no package index is configured."""
    if not settings.M2D_PACKAGE_INDEX_URL:
        yield "none"
        return
    index = urlsplit(settings.M2D_PACKAGE_INDEX_URL)
    folder = settings.M2D_GATEWAY_DIR / f"{purpose}-{submission_id}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    relay = Relay(
        folder / "index.sock",
        index.hostname or "127.0.0.1",
        index.port or (443 if index.scheme == "https" else 80),
        settings.M2D_FORWARDER_UID if os.geteuid() == 0 else None,
    )
    relay.start()
    name = f"m2d-{settings.M2D_INSTANCE}-{purpose}-{submission_id}-door"
    try:
        # One left by a build whose worker died holds the old socket folder: never reuse it.
        docker_api.remove_door(name)
        door = docker_api.start_door(
            docker_api.DoorSpec(
                name=name,
                image=settings.M2D_FORWARDER_IMAGE,
                socket_dir=folder,
                port=DOOR_PORT,
                user=f"{settings.M2D_FORWARDER_UID}:{settings.M2D_FORWARDER_UID}",
                labels=labels_for_build(submission_id),
            )
        )
        yield f"container:{door}"
    finally:
        with contextlib.suppress(docker_api.PlatformFault):
            docker_api.remove_door(name)
        relay.stop()
        shutil.rmtree(folder, ignore_errors=True)
