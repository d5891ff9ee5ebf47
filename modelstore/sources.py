"""What a registration may copy: released files of the caller's own submission, named by paths
inside its release. Nothing here reads a URL or a file that is not released."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from exports.models import ExportFile

from . import blobs
from .card import CARD_FILE, max_bytes, parse_card_file
from .errors import HashMismatch, InvalidCard, InvalidPath, InvalidRequest, NotFound, NotReleased

MAX_FILES = 1000
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Chosen:
    entry: ExportFile
    path: str  # where the file sits inside the version


def clean_path(raw) -> str:
    """A path inside the release, as written by the run (`model/` names a folder), or InvalidPath."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidPath("Each path must be a non-empty string, e.g. 'model/' or 'model.pt'.")
    if raw.startswith("/") or "\\" in raw or "\x00" in raw or re.match(r"^[A-Za-z]:", raw):
        raise InvalidPath(f"{raw!r} is not a path inside the release; give it relative, e.g. 'model/weights.pt'.")
    parts = raw.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidPath(f"{raw!r} may not contain '..', '.' or empty parts; name the file as the release lists it.")
    return raw


def choose(submission, paths, sha256: dict | None) -> list[Chosen]:
    """The released files the paths name, each with its path inside the version: a single folder
    registered is stripped (`model/predict.py` → `predict.py`), anything else keeps its path."""
    if not isinstance(paths, list) or not paths:
        raise InvalidPath("Name at least one released file or folder in paths, e.g. ['model/'].")
    paths = [clean_path(p) for p in paths]
    export = getattr(submission, "export", None)
    entries = list(export.entries.filter(source=ExportFile.Source.RUN)) if export else []
    released = {e.path: e for e in entries if e.state == ExportFile.State.RELEASED}
    if not released:
        raise NotReleased(
            f"Nothing of submission {submission.pk}'s export is released; ask for its release and wait for an admin."
        )
    chosen: dict[str, Chosen] = {}
    strip = paths[0] if len(paths) == 1 and paths[0].endswith("/") else ""
    for path in paths:
        # A path that is not released answers the same whether or not a held file has that name:
        # the names of files nobody has reviewed are not the owner's to learn.
        if path.endswith("/"):
            found = [e for p, e in sorted(released.items()) if p.startswith(path)]
        else:
            found = [released[path]] if path in released else []
        if not found:
            raise NotFound(
                f"Submission {submission.pk} has no released {'folder' if path.endswith('/') else 'file'} {path!r} "
                f"(released: {', '.join(sorted(released)[:10])})."
            )
        for entry in found:
            inside = entry.path.removeprefix(strip)
            if inside in chosen and chosen[inside].entry.pk != entry.pk:
                raise InvalidPath(f"Two files would both be {inside!r} in the model; register one folder or the files.")
            chosen[inside] = Chosen(entry, inside)
    if len(chosen) > MAX_FILES:
        raise InvalidPath(f"A model version holds at most {MAX_FILES} files; these paths name {len(chosen)}.")
    _check_hashes(chosen.values(), sha256)
    return sorted(chosen.values(), key=lambda c: c.path)


def _check_hashes(chosen, sha256: dict | None) -> None:
    if sha256 is None:
        return
    if not isinstance(sha256, dict):
        raise InvalidRequest("sha256 maps release paths to their hex digests, e.g. {'model/weights.pt': '…'}.")
    by_path = {c.entry.path: c.entry for c in chosen}
    for path, digest in sha256.items():
        if path not in by_path:
            raise InvalidRequest(f"sha256 names {path!r}, which is not one of the files registered.")
        if not isinstance(digest, str) or not SHA256.match(digest.lower()):
            raise InvalidRequest(f"The sha256 of {path!r} must be 64 hex digits.")
        if digest.lower() != by_path[path].sha256:
            raise HashMismatch(
                f"{path} was released with sha256 {by_path[path].sha256}, not {digest.lower()}; "
                "check you are registering the file you tested."
            )


def card_in_release(chosen: list[Chosen]) -> dict | None:
    """The `m2d-model.json` at the top of what is registered, read and checked against its
    released digest, or None."""
    found = next((c.entry for c in chosen if c.path == CARD_FILE), None)
    if found is None:
        return None
    if found.size > max_bytes():
        raise InvalidCard(f"{CARD_FILE} has {found.size:,} bytes; a card may have at most {max_bytes():,}.")
    with blobs._open_release_file(found.storage_key) as handle:
        data = handle.read(max_bytes() + 1)
    if hashlib.sha256(data).hexdigest() != found.sha256:
        raise HashMismatch(f"{found.path} in export storage is not the released file; ask an admin to look at it.")
    return parse_card_file(data)
