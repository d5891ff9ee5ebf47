"""Output kept within bounds: the capped log a build or run writes, and the tail read back."""

from __future__ import annotations

import collections
import io
from pathlib import Path

from m2d.printable import printable


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
        text = printable(f.read().decode("utf-8", "replace"))
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])
