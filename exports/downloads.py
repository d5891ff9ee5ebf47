"""Downloads of released files: signed, expiring links for their owner alone, audited when used."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.template.defaultfilters import pluralize

from . import audit, storage
from .errors import ExportRefused, LinkExpired
from .models import Export, ExportEvent, ExportFile

A = ExportEvent.Action
DOWNLOAD_SALT = "m2d.exports.download"


@dataclass(frozen=True)
class Download:
    filename: str
    key: str
    size: int | None


def download_token(*, user, export: Export, file: ExportFile | None = None) -> str:
    """A signed, expiring token for one released file (or the whole release) of the user's own export."""
    if user.pk != export.submission.owner_id:
        raise ExportRefused("Only the owner of an export can download it.")
    if file is not None and (file.export_id != export.pk or file.state != ExportFile.State.RELEASED):
        raise ExportRefused(f"{file.display_path} is not released.")
    if file is None and not export.entries.filter(state=ExportFile.State.RELEASED).exists():
        raise ExportRefused("Nothing of this export is released yet.")
    payload = {"u": user.pk, "e": export.pk, "f": file.pk if file else 0}
    return signing.TimestampSigner(salt=DOWNLOAD_SALT).sign_object(payload)


def download_open(*, by, token: str) -> Download:
    """Check a download token for this user and what it points to; audit the download."""
    try:
        payload = signing.TimestampSigner(salt=DOWNLOAD_SALT).unsign_object(
            token, max_age=settings.M2D_EXPORT_LINK_SECONDS
        )
    except signing.SignatureExpired as exc:
        raise LinkExpired("This download link has expired. Open the submission page for a fresh one.") from exc
    except signing.BadSignature as exc:
        raise ExportRefused("This download link is not valid.") from exc
    export = Export.objects.select_related("submission").filter(pk=payload.get("e")).first()
    if export is None or by.pk != payload.get("u") or by.pk != export.submission.owner_id:
        raise ExportRefused("This download link is not yours. Only the owner of an export can download it.")
    released = export.entries.filter(state=ExportFile.State.RELEASED)
    if payload.get("f"):
        file = released.filter(pk=payload["f"]).first()
        if file is None:
            raise ExportRefused("This file is not released.")
        with transaction.atomic():
            audit.record(export.submission, A.DOWNLOADED, by=by, file=file)
        return Download(file.display_path.rsplit("/", 1)[-1], file.storage_key, file.size)
    files = list(released)
    if not files:
        raise ExportRefused("Nothing of this export is released.")
    key = storage.release_zip_key(export.submission_id, [(f.display_path, f.storage_key, f.sha256) for f in files])
    with transaction.atomic():
        audit.record(
            export.submission,
            A.DOWNLOADED,
            by=by,
            comment=f"whole release as a zip ({len(files)} file{pluralize(len(files))})",
        )
    return Download(f"submission-{export.submission_id}-release.zip", key, None)
