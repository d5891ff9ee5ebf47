"""The sha256 of every data set file, so an export that copies one is flagged.

Hashing the data set is slow (it can be terabytes), so the index is built once and kept under
M2D_DATASET_INDEX_DIR, named after a cheap fingerprint of the folder (every file's path, size and
modification time). When the data set changes, that fingerprint changes and the index is rebuilt.
The index also gives the data set's content fingerprint (a hash over every path and file hash):
the data set version recorded in provenance.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

FORMAT = 1


@dataclass(frozen=True)
class DatasetIndex:
    root: str
    stat_fingerprint: str
    fingerprint: str  # content: changes exactly when some file's path or bytes change
    file_count: int
    total_bytes: int
    by_sha256: dict[str, list[str]]

    def matches(self, sha256: str) -> list[str]:
        return self.by_sha256.get(sha256, [])


def _walk(root: Path):
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            info = path.lstat()
            if path.is_symlink() or not path.is_file():
                continue
            yield path.relative_to(root).as_posix(), info


def stat_fingerprint(root: Path) -> str:
    digest = hashlib.sha256(f"{FORMAT}\0{root.resolve()}\0".encode())
    for relative, info in _walk(root):
        digest.update(f"{relative}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _build(root: Path, stat_fp: str) -> DatasetIndex:
    by_sha256: dict[str, list[str]] = {}
    content = hashlib.sha256()
    count = total = 0
    for relative, info in _walk(root):
        sha256 = _file_sha256(root / relative)
        by_sha256.setdefault(sha256, []).append(relative)
        content.update(f"{relative}\0{sha256}\n".encode())
        count += 1
        total += info.st_size
    return DatasetIndex(str(root.resolve()), stat_fp, content.hexdigest(), count, total, by_sha256)


_cache: dict[str, DatasetIndex] = {}


def dataset_index(root: Path | None = None, index_dir: Path | None = None) -> DatasetIndex:
    """The index of the data set as it is now: from memory, from disk, or freshly built."""
    root = Path(root or settings.M2D_DATASET_DIR)
    index_dir = Path(index_dir or settings.M2D_DATASET_INDEX_DIR)
    stat_fp = stat_fingerprint(root)
    if stat_fp in _cache:
        return _cache[stat_fp]
    index_dir.mkdir(parents=True, exist_ok=True)
    stored = index_dir / f"{stat_fp}.json"
    # One builder at a time: a second worker waits and then reads what the first wrote.
    with open(index_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stored.exists():
            data = json.loads(stored.read_text())
            index = DatasetIndex(**data)
        else:
            index = _build(root, stat_fp)
            with tempfile.NamedTemporaryFile("w", dir=index_dir, delete=False, suffix=".tmp") as handle:
                json.dump(index.__dict__, handle)
            os.replace(handle.name, stored)
            for old in index_dir.glob("*.json"):
                if old != stored:
                    old.unlink(missing_ok=True)
    _cache[stat_fp] = index
    return index
