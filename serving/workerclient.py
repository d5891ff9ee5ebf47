"""Talking to a serving worker over its unix socket, without trusting the folder it lives in.

The model's code can write in its socket folder, so it can replace worker.sock with a link to any
socket of the host (the Docker engine's, the database's); connecting by path would follow it. The
socket is opened with O_PATH|O_NOFOLLOW, must be a socket owned by the worker's uid, and is then
connected through /proc/self/fd/N, the very inode that was checked.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import stat
import time
from pathlib import Path


class WorkerUnreachable(Exception):
    """The worker cannot be asked (no socket yet, not a socket, not its own, not answering)."""


class SocketRefused(WorkerUnreachable):
    """The worker's socket is not the one its server made (a link, another file, another owner's)."""


class WorkerBrokeOff(WorkerUnreachable):
    """The worker took the request and closed the connection without an answer: its process died
    (out of memory, os._exit, a crash in native code)."""


class WorkerTimedOut(Exception):
    pass


def _connect(path: Path, owner_uid: int, timeout: float) -> socket.socket:
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise WorkerUnreachable("the worker has no socket (yet)") from None
    except OSError as exc:
        raise WorkerUnreachable(f"the worker's socket cannot be opened: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISSOCK(info.st_mode):
            raise SocketRefused(f"the worker's socket was replaced (mode {oct(info.st_mode)}); refused")
        if info.st_uid != owner_uid:
            raise SocketRefused(f"the worker's socket belongs to uid {info.st_uid}, not {owner_uid}; refused")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(f"/proc/self/fd/{fd}")
        except OSError as exc:
            sock.close()
            raise WorkerUnreachable(f"the worker does not answer on its socket: {exc.strerror or exc}") from None
        return sock
    finally:
        os.close(fd)


class _Connection(http.client.HTTPConnection):
    def __init__(self, sock: socket.socket, timeout: float):
        super().__init__("worker", timeout=timeout)
        self.sock = sock

    def connect(self) -> None:  # already connected, through the checked inode
        pass


def ask(path: Path, owner_uid: int, method: str, url: str, body: dict | None, timeout: float, max_answer: int):
    """(status, answer as a dict) from the worker; raises WorkerUnreachable or WorkerTimedOut."""
    sock = _connect(path, owner_uid, timeout)
    connection = _Connection(sock, timeout)
    data = json.dumps(body).encode() if body is not None else None
    try:
        connection.request(method, url, body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read(max_answer + 1)
    except TimeoutError:
        raise WorkerTimedOut(f"the model did not answer within {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise WorkerBrokeOff(f"the worker broke off the answer ({exc})") from None
    finally:
        with contextlib.suppress(OSError):
            connection.close()
    return answer_of(response.status, raw, max_answer)


def answer_of(status: int, raw: bytes, max_answer: int) -> tuple[int, dict]:
    """The worker's answer read back: 502 when it is over the cap or not JSON."""
    if len(raw) > max_answer:
        return 502, {"error": f"the model's answer is over {max_answer} bytes"}
    try:
        return status, json.loads(raw)
    except ValueError:
        return 502, {"error": "the model's server answered something that is not JSON"}


def wait_ready(path: Path, owner_uid: int, timeout: float, still_running) -> None:
    """Until the worker answers GET /ready; raises WorkerUnreachable when it stops or the time is up."""
    deadline = time.monotonic() + timeout
    last = "no socket yet"
    while time.monotonic() < deadline:
        try:
            status, _ = ask(path, owner_uid, "GET", "/ready", None, timeout=5, max_answer=4096)
            if status == 200:
                return
        except SocketRefused:
            raise
        except (WorkerUnreachable, WorkerTimedOut) as exc:  # a socket is bound a moment before it listens
            last = str(exc)
        if not still_running():
            raise WorkerUnreachable("the worker's container stopped while the model loaded")
        time.sleep(0.05)
    raise WorkerUnreachable(f"the model was not ready within {timeout:g} s ({last})")
