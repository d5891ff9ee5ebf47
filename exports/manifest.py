import hashlib
import os
from pathlib import Path


def file_digest(path: Path) -> tuple[int, str]:
    """Size and sha256 of a regular file, opened without following a link."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def build_manifest(folder: Path) -> list[dict]:
    """Every regular file under `folder`: relative path, size and sha256. Links are not followed
    (a run could plant one pointing anywhere on the host)."""
    entries = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            size, sha256 = file_digest(path)
            entries.append({"path": path.relative_to(folder).as_posix(), "size": size, "sha256": sha256})
    return sorted(entries, key=lambda e: e["path"])
