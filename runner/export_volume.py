"""A run's /mnt/export with a hard size cap enforced by the kernel.

Each run writes into its own ext4 file system, made in a sparse image file and loop-mounted on
the host; a write past the cap fails with ENOSPC inside the run, and the host's disk is never at
risk. After the run the regular files are copied to the export root (links and special files
stay behind) and the image is unmounted and deleted.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class ExportVolumeError(RuntimeError):
    """The host could not prepare the capped folder: a platform fault."""


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise ExportVolumeError(f"{' '.join(command)} failed: {result.stderr.strip() or result.stdout.strip()}")


def is_mounted(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


@dataclass(frozen=True)
class ExportVolume:
    image: Path
    mountpoint: Path
    size_bytes: int
    uid: int

    def create(self) -> Path:
        self.destroy()
        self.image.parent.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        with open(self.image, "wb") as handle:
            handle.truncate(self.size_bytes)
        # No journal and no reserved blocks: the whole cap is the researcher's to use.
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "nodiscard", str(self.image))
        _run("mount", "-o", "loop,nosuid,nodev,noexec", str(self.image), str(self.mountpoint))
        shutil.rmtree(self.mountpoint / "lost+found", ignore_errors=True)
        os.chown(self.mountpoint, self.uid, self.uid)
        self.mountpoint.chmod(0o700)
        return self.mountpoint

    def collect(self, destination: Path) -> None:
        """Copy the regular files out; never follow a link the run may have planted."""
        if destination.exists():
            shutil.rmtree(destination)
        destination.mkdir(parents=True)
        for root, _dirs, files in os.walk(self.mountpoint, followlinks=False):
            relative = Path(root).relative_to(self.mountpoint)
            for name in files:
                source = Path(root) / name
                info = os.lstat(source)
                if not stat.S_ISREG(info.st_mode):
                    continue
                target = destination / relative / name
                target.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)

    def destroy(self) -> None:
        if self.mountpoint.exists() and is_mounted(self.mountpoint):
            try:
                _run("umount", str(self.mountpoint))
            except ExportVolumeError:
                _run("umount", "-l", str(self.mountpoint))
        if self.mountpoint.exists():
            shutil.rmtree(self.mountpoint, ignore_errors=True)
        self.image.unlink(missing_ok=True)
