"""Where export files live after the run: the local export root or a private S3 bucket.

Both go through Django's storage API (settings.STORAGES["exports"]). Keys:
  <submission id>/<path>          files the run wrote (locally: the very folder the run wrote to)
  _logs/<submission id>/<kind>.log   a platform log attached for release
  _hostlogs/<submission id>/<kind>.log   a full build or run log, kept by the host that wrote it
                                       (it may not be the portal's), for the review to read and attach
  _releases/<submission id>/<digest>.zip   the whole release as one zip, built on first download
No key is ever handed out: local files are streamed by the signed download view, S3 files through
short presigned URLs minted by that view once it has checked the release.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from botocore.exceptions import ClientError
from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, storages
from storages.utils import clean_name


def export_storage():
    return storages["exports"]


def is_local() -> bool:
    return isinstance(export_storage(), FileSystemStorage)


def run_file_key(submission_id: int, path: str) -> str:
    return f"{submission_id}/{path}"


def log_key(submission_id: int, kind: str) -> str:
    return f"_logs/{submission_id}/{kind}.log"


def host_log_key(submission_id: int, kind: str) -> str:
    return f"_hostlogs/{submission_id}/{kind}.log"


def store_run_files(submission_id: int, folder: Path, paths: list[str]) -> None:
    """Put the run's files in place. Locally they already are (the folder is under the export
    root); with S3 they are uploaded and the host copy is removed."""
    storage = export_storage()
    if is_local():
        if Path(storage.path(str(submission_id))).resolve() != folder.resolve():
            for path in paths:
                _save(storage, run_file_key(submission_id, path), folder / path)
        return
    for path in paths:
        _save(storage, run_file_key(submission_id, path), folder / path)
    shutil.rmtree(folder, ignore_errors=True)


def store_file(key: str, source: Path) -> None:
    _save(export_storage(), key, source)


def _save(storage, key: str, source: Path) -> None:
    if storage.exists(key):
        storage.delete(key)
    with open(source, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as handle:
        saved = storage.save(key, File(handle, name=source.name))
    if saved != key:  # a storage that renamed the file would break the manifest's promise
        storage.delete(saved)
        raise OSError(f"export storage stored {key!r} as {saved!r}")


def delete(key: str) -> None:
    storage = export_storage()
    storage.delete(key)
    if is_local():  # leave no empty folders behind in the export root
        folder = Path(storage.path(key)).parent
        root = Path(storage.location).resolve()
        while folder.resolve() != root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


def open_file(key: str):
    return export_storage().open(key, "rb")


def exists(key: str) -> bool:
    return export_storage().exists(key)


def read_range(key: str, offset: int, length: int) -> bytes:
    """Up to `length` bytes of the file from `offset`, without fetching the rest of it (OSError
    when the file cannot be read)."""
    storage = export_storage()
    if is_local():
        with open_file(key) as handle:
            handle.seek(offset)
            return handle.read(length)
    try:
        if length <= 0 or offset >= storage.size(key):
            return b""
        name = storage._normalize_name(clean_name(key))
        return storage.bucket.Object(name).get(Range=f"bytes={offset}-{offset + length - 1}")["Body"].read()
    except ClientError as exc:
        raise OSError(f"export storage could not read {key!r}: {exc}") from exc


def presigned_url(key: str, filename: str) -> str:
    """A URL to the object, valid for M2D_EXPORT_LINK_SECONDS, that saves under `filename`."""
    storage = export_storage()
    disposition = f'attachment; filename="{re.sub(r"[^A-Za-z0-9._-]", "_", filename)}"'
    return storage.url(
        key,
        parameters={"ResponseContentDisposition": disposition},
        expire=settings.M2D_EXPORT_LINK_SECONDS,
    )


def release_zip_key(submission_id: int, entries: list[tuple[str, str, str]]) -> str:
    """The zip of these (archive name, storage key, sha256) entries, built once per release set."""
    digest = hashlib.sha256("\n".join(f"{name}\0{sha}" for name, _, sha in sorted(entries)).encode()).hexdigest()
    key = f"_releases/{submission_id}/{digest[:32]}.zip"
    storage = export_storage()
    if storage.exists(key):
        return key
    delete_release_zips(submission_id)  # zips of an earlier release set are stale now
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "release.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for name, source_key, _ in sorted(entries):
                with open_file(source_key) as source, archive.open(name, "w", force_zip64=True) as member:
                    shutil.copyfileobj(source, member, 1024 * 1024)
        _save(storage, key, target)
    return key


def delete_release_zips(submission_id: int) -> None:
    storage = export_storage()
    try:
        _, files = storage.listdir(f"_releases/{submission_id}")
    except FileNotFoundError:
        return
    for name in files:
        delete(f"_releases/{submission_id}/{name}")
