"""A run's /mnt/export with a hard size cap enforced by the kernel.

Each run writes into its own ext4 file system, made in a sparse image file and loop-mounted on
the host; a write past the cap fails with ENOSPC inside the run. After the run the regular files
are copied to the export root (links and special files stay behind) and the image is unmounted
and deleted. Before a byte is copied, what the run left is checked against the export limits: a
sparse file claims far more than it holds, so apparent sizes are summed (the host disk pays at most
the cap), and the file count, path lengths and name characters are bounded (names are data too).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class ExportVolumeError(RuntimeError):
    """The host could not prepare the capped folder: a platform fault."""


class ExportLimitExceeded(ValueError):
    """What the run left in /mnt/export breaks a limit: the researcher's doing. The message says
    which limit, in counts and sizes only, never a name the run chose."""


@dataclass(frozen=True)
class ExportLimits:
    max_bytes: int
    max_files: int
    max_path_chars: int
    name_characters: str  # a regular-expression character class body, e.g. "A-Za-z0-9._-"


def human_size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def check_export(root: Path, limits: ExportLimits) -> list[Path]:
    """The regular files under `root`, relative to it, once they are within `limits`; the walk stops
    at the first file past the count, so a million files cost no more than the limit."""
    name = re.compile(f"[{limits.name_characters}]+")
    found: list[Path] = []
    apparent = allocated = sparse = 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for entry in sorted(files):
            path = Path(folder) / entry
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                continue
            relative = path.relative_to(root)
            if len(found) >= limits.max_files:
                raise ExportLimitExceeded(
                    f"/mnt/export holds more than {limits.max_files:,} files, the most an export may have "
                    "(M2D_EXPORT_MAX_FILES). Nothing of it was kept: write fewer, larger files "
                    "(e.g. one archive)."
                )
            if len(relative.as_posix()) > limits.max_path_chars:
                raise ExportLimitExceeded(
                    f"A file in /mnt/export has a path of {len(relative.as_posix())} characters; at most "
                    f"{limits.max_path_chars} are allowed (M2D_EXPORT_MAX_PATH_CHARS). Nothing of the export was "
                    "kept: use shorter names."
                )
            if not all(name.fullmatch(part) and not part.startswith(".") for part in relative.parts):
                raise ExportLimitExceeded(
                    "A file in /mnt/export has a name with characters other than "
                    f"{limits.name_characters} or starting with '.' (M2D_EXPORT_NAME_CHARACTERS). Nothing of "
                    "the export was kept: use plain names."
                )
            apparent += info.st_size
            allocated += info.st_blocks * 512
            # Far fewer blocks than bytes: holes, which a copy would fill in on the host.
            sparse += info.st_size > 1024 * 1024 and info.st_blocks * 512 < info.st_size // 8
            found.append(relative)
    if apparent > limits.max_bytes:
        holes = (
            f" {sparse} of them {'is a sparse file' if sparse == 1 else 'are sparse files'}: they claim "
            f"{human_size(apparent)} but hold {human_size(allocated)}."
            if sparse
            else ""
        )
        raise ExportLimitExceeded(
            f"The files in /mnt/export add up to {human_size(apparent)}, more than the export limit of "
            f"{human_size(limits.max_bytes)} (M2D_EXPORT_MAX_BYTES).{holes} Nothing of the export was kept."
        )
    return found


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

    def collect(self, destination: Path, limits: ExportLimits) -> None:
        """Copy the regular files out once they are within `limits` (ExportLimitExceeded, with
        nothing copied, when not); never follow a link the run may have planted."""
        if destination.exists():
            shutil.rmtree(destination)
        files = check_export(self.mountpoint, limits)
        destination.mkdir(parents=True)
        for relative in files:
            source = self.mountpoint / relative
            target = destination / relative
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
