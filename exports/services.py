from pathlib import Path

from django.db import transaction

from .manifest import build_manifest
from .models import Export


@transaction.atomic
def export_collect(*, submission, folder: Path) -> Export:
    files = build_manifest(folder) if folder.is_dir() else []
    export, _ = Export.objects.update_or_create(
        submission=submission,
        defaults={"folder": str(folder), "files": files, "total_bytes": sum(f["size"] for f in files)},
    )
    return export
