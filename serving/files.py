"""A version's files on the serving host: copied out of the model store once, checked against
their hashes, read-only, in a folder nobody but the platform writes to."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath

from django.conf import settings

from modelstore.blobs import model_storage

CHUNK = 1024 * 1024


class ModelFilesDamaged(Exception):
    """The store's bytes are not those registered: a platform fault, never the researcher's."""


def model_folder(version) -> Path:
    folder = settings.M2D_SERVE_DIR / "models" / str(version.pk)
    if folder.is_dir():
        return folder
    partial = folder.with_name(f".{version.pk}-{uuid.uuid4().hex}")
    try:
        for entry in version.files.all():
            relative = PurePosixPath(entry.path)
            if relative.is_absolute() or ".." in relative.parts:
                raise ModelFilesDamaged(f"the store holds a file named {entry.path!r}")
            target = partial.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with model_storage().open(entry.storage_key, "rb") as source, open(target, "wb") as out:
                for block in iter(lambda: source.read(CHUNK), b""):
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != entry.sha256:
                raise ModelFilesDamaged(f"{entry.path} in the model store does not match its registered sha256")
        for root, _dirs, names in os.walk(partial):
            for name in names:
                os.chmod(os.path.join(root, name), 0o444)
            os.chmod(root, 0o555)
        partial.parent.mkdir(parents=True, exist_ok=True)
        os.rename(partial, folder)
    except FileExistsError:
        pass  # another worker of the same version put it in place first
    except OSError as exc:
        if not folder.is_dir():
            raise ModelFilesDamaged(f"the version's files could not be put in place: {exc}") from exc
    finally:
        if partial.exists():
            for root, _dirs, _ in os.walk(partial):
                os.chmod(root, 0o755)
            shutil.rmtree(partial, ignore_errors=True)
    return folder


def socket_folder(worker_id: int) -> Path:
    return settings.M2D_SERVE_DIR / "w" / str(worker_id)


def socket_path(worker_id: int) -> Path:
    return socket_folder(worker_id) / "worker.sock"
