"""The Dockerfile the platform builds a submission with, made from the one researchers dry-run.

`docker_scripts/execute_code*` first unpacks the submission (a zip or a folder) in a stage of its
own, then builds the image from the unpacked files. The platform has already checked and
normalised the zip at upload, so it unpacks it itself, straight into the build context as `src/`,
and builds the second part alone: the same steps, in the same order, with the same cache, minus a
container run per build (about half of a code-only rebuild). Its labels go in one step.
"""

from __future__ import annotations

import io
import json
import re
import stat
import tarfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

UNPACK_STAGE = "unpack"
REQUIREMENTS = "requirements.txt"
CONTEXT_DIR = "src"
_FROM = re.compile(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE)


class RecipeError(ValueError):
    """The shared Dockerfile is not shaped as this module expects: a fault of the platform."""


def platform_recipe(dockerfile: str, labels: dict[str, str]) -> str:
    """The shared Dockerfile without its unpack stage, reading the files from `src/` instead,
    with the labels appended as one LABEL step."""
    lines = dockerfile.splitlines()
    kept: list[str] = []
    stage, stages = None, []
    for line in lines:
        match = _FROM.match(line.strip())
        if match:
            stage = (match.group(1) or "").lower()
            stages.append(stage)
        if stage == UNPACK_STAGE:
            continue
        kept.append(line)
    if UNPACK_STAGE not in stages or stages[-1] == UNPACK_STAGE:
        raise RecipeError(f"the Dockerfile has no '{UNPACK_STAGE}' stage followed by the image's own")
    text = "\n".join(kept)
    reads = f"--from={UNPACK_STAGE} /src/"
    if reads not in text:
        raise RecipeError(f"the image's stage does not read the submission with `COPY {reads}...`")
    text = text.replace(reads, f"{CONTEXT_DIR}/")
    if f"--from={UNPACK_STAGE}" in text:
        raise RecipeError(f"the image's stage reads from the '{UNPACK_STAGE}' stage other than /src/")
    if labels:
        text += "\nLABEL " + " ".join(f"{key}={json.dumps(value)}" for key, value in sorted(labels.items())) + "\n"
    return text


def _safe_name(name: str) -> str | None:
    """The member's path inside src/, or None for anything that is not a plain relative path
    (intake never stores such a zip; this is a second lock on the same door)."""
    path = PurePosixPath(name)
    if name.endswith("/") or path.is_absolute() or not path.parts or any(p in ("", ".", "..") for p in path.parts):
        return None
    return str(path)


def write_context(out: IO[bytes], recipe: str, archive: Path) -> None:
    """A build context (tar) holding the recipe as Dockerfile and the archive's files under src/:
    regular files only, root-owned, readable by everyone, dated like the normalised zip."""
    mtime = int(time.mktime((1980, 1, 1, 0, 0, 0, 0, 0, -1)))
    with tarfile.open(fileobj=out, mode="w") as tar, zipfile.ZipFile(archive) as zf:
        data = recipe.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mode, info.mtime = len(data), 0o644, mtime
        tar.addfile(info, fileobj=io.BytesIO(data))
        for member in zf.infolist():
            name = _safe_name(member.filename)
            mode = member.external_attr >> 16
            if name is None or member.is_dir() or stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                continue
            info = tarfile.TarInfo(f"{CONTEXT_DIR}/{name}")
            info.mode, info.mtime = 0o644, mtime
            if name == REQUIREMENTS:
                data = normal_requirements(zf.read(member))
                info.size = len(data)
                tar.addfile(info, fileobj=io.BytesIO(data))
                continue
            info.size = member.file_size
            with zf.open(member) as source:
                tar.addfile(info, fileobj=source)


_COMMENT = re.compile(r"(^|\s)#.*$")


def normal_requirements(raw: bytes) -> bytes:
    """requirements.txt in one form per set of requirements: continued lines joined, comments,
    blank lines and repeats dropped, sorted. The installed layer is keyed on this file, so a file
    that only reorders or repeats lines of another reuses its layer."""
    text = raw.decode("utf-8", "replace").replace("\r\n", "\n").replace("\\\n", " ")
    lines = {" ".join(_COMMENT.sub("", line).split()) for line in text.splitlines()}
    return "".join(f"{line}\n" for line in sorted(lines - {""}, key=lambda line: (line.lower(), line))).encode()
