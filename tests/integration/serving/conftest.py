"""The model store's fixtures (released exports, registrations, scoped API clients), on local
export and model store folders: serving reads the store through the same storage API for S3."""

from __future__ import annotations

import pytest

from tests.integration.modelstore import conftest as modelstore

api, approved, finished_submission, released, store, users = (
    modelstore.api,
    modelstore.approved,
    modelstore.finished_submission,
    modelstore.released,
    modelstore.store,
    modelstore.users,
)


@pytest.fixture
def export_storage(settings, tmp_path):
    """The local export folder."""
    settings.M2D_EXPORT_ROOT = tmp_path / "exports"
    settings.M2D_EXPORT_ROOT.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(settings.M2D_EXPORT_ROOT)},
        },
    }
    return "local"
