"""The store's bytes: one blob per sha256 (`blobs/sha256/<ab>/<hex>`), through Django's storage API
(settings.STORAGES["models"]: a local folder, or the exports' S3 bucket under its own prefix).

Blobs are written content-addressed before the registration commits. A refused or failed
registration deletes the blobs it created itself (and only those no committed file refers to);
one left behind by a crash is harmless, since its key is its content, and `sweep()` removes it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

from django.core.files import File
from django.core.files.storage import FileSystemStorage, storages

from exports import storage as export_storage

from .errors import HashMismatch, InvalidPath, StorageFailed
from .models import ModelFile

CHUNK = 1024 * 1024


def model_storage():
    return storages["models"]


def blob_key(sha256: str) -> str:
    return f"blobs/sha256/{sha256[:2]}/{sha256}"


def _open_release_file(key: str):
    """The export file at `key`, refusing a link anywhere on its way (a local export root holds
    the very folder the run wrote to)."""
    store = export_storage.export_storage()
    if not isinstance(store, FileSystemStorage):
        return store.open(key, "rb")
    root = Path(store.location).resolve()
    current = root
    for part in Path(key).parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError as exc:
            raise OSError(f"{key} is missing from export storage") from exc
        if stat.S_ISLNK(mode):
            raise InvalidPath(f"{key.split('/', 1)[-1]} is a link inside the release; register regular files only.")
    return open(current, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW))  # noqa: SIM115


def copy_in(export_key: str, expected_sha256: str, shown_as: str) -> tuple[str, bool]:
    """Copy a released file into the store, checking its bytes are the released ones. Returns the
    blob key and whether this call created the blob."""
    try:
        with tempfile.TemporaryFile() as scratch:
            digest = hashlib.sha256()
            with _open_release_file(export_key) as source:
                for block in iter(lambda: source.read(CHUNK), b""):
                    digest.update(block)
                    scratch.write(block)
            if digest.hexdigest() != expected_sha256:
                raise HashMismatch(
                    f"{shown_as} in export storage no longer has the released bytes (sha256 "
                    f"{digest.hexdigest()[:16]}…, released {expected_sha256[:16]}…); ask an admin to look at it."
                )
            key = blob_key(expected_sha256)
            store = model_storage()
            if store.exists(key):
                if ModelFile.objects.filter(storage_key=key).exists():
                    return key, False
                # An orphan the sweep may be about to delete: written again, it is young and ours.
                store.delete(key)
            scratch.seek(0)
            saved = store.save(key, File(scratch, name=expected_sha256))
            if saved != key:
                store.delete(saved)
                raise StorageFailed(f"the model store saved {key!r} as {saved!r}; check its storage settings")
            return key, True
    except OSError as exc:
        raise StorageFailed(f"{shown_as} could not be copied into the model store ({exc}); try again later.") from exc


def read(key: str, limit: int) -> bytes:
    with model_storage().open(key, "rb") as handle:
        return handle.read(limit + 1)


def delete(keys) -> None:
    store = model_storage()
    for key in keys:
        store.delete(key)


def modified_at(key: str):
    return model_storage().get_modified_time(key)


def stored_keys() -> list[str]:
    """Every blob in the store."""
    store = model_storage()
    keys = []
    try:
        prefixes, _ = store.listdir("blobs/sha256")
    except FileNotFoundError:
        return keys
    for prefix in prefixes:
        _, files = store.listdir(f"blobs/sha256/{prefix}")
        keys += [f"blobs/sha256/{prefix}/{name}" for name in files]
    return sorted(keys)
