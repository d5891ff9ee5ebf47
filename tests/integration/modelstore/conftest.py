"""Fixtures of the model store tests: the airlock's storage (local folder or S3 on a real moto
server), its users and crafted finished submissions, plus the store's own storage, exports
released through the airlock's services, and API clients with chosen token scopes."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from tests.integration.exports import conftest as airlock

# The airlock's fixtures, as they are: its storages, users and crafted finished submissions.
export_storage, finished_submission, s3_server, users = (
    airlock.export_storage,
    airlock.finished_submission,
    airlock.s3_server,
    airlock.users,
)
sha256 = airlock.sha256

WEIGHTS = bytes(range(256)) * 64
PREDICT = b"class Model:\n    def load(self, model_dir, device):\n        pass\n"
CARD = {
    "summary": "Case-level malignancy from the four CLaM views.",
    "entrypoint": "predict.py:Model",
    "inputs": [
        {"name": view, "formats": ["image/png", "application/x-npy"], "datatype": "UINT8", "max_dims": [4096, 4096]}
        for view in ("LCC", "LMLO", "RCC", "RMLO")
    ],
    "outputs": [{"name": "malignancy", "datatype": "FP32", "shape": [1]}],
    "licence": "CC-BY-4.0",
}
FOLDER = {
    "model/weights.pt": WEIGHTS,
    "model/predict.py": PREDICT,
    "model/m2d-model.json": json.dumps(CARD).encode(),
    "notes.txt": b"not part of the model\n",
    "scratch.bin": b"held back\n",
}


@pytest.fixture
def store(export_storage, settings, tmp_path):
    """The model store next to the export storage: a local folder, or the same bucket under `models`."""
    models = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "models")},
    }
    if export_storage == "s3":
        exports = settings.STORAGES["exports"]
        models = {**exports, "OPTIONS": {**exports["OPTIONS"], "location": "models", "file_overwrite": False}}
    settings.STORAGES = {**settings.STORAGES, "models": models}
    settings.M2D_EXPORT_TWO_PERSON_RULE = False
    return export_storage


@pytest.fixture
def approved(users):
    """Users with approved researcher rows (API tokens are for approved researchers)."""
    from accounts.models import Researcher

    for key in ("owner", "other"):
        Researcher.objects.create(user=users[key], status=Researcher.Status.APPROVED)
    users["outsider"] = type(users["owner"]).objects.create_user(username=f"x{users['owner'].username}", password="pw")
    return users


@pytest.fixture
def released(store, approved, finished_submission):
    """A finished submission of `owner` whose files are released, all but those named in `held`."""
    from exports.services import export_decide, export_request_release

    def make(files=None, owner=None, held=("scratch.bin",)):
        submission = finished_submission(owner or approved["owner"], dict(FOLDER if files is None else files))
        export_request_release(
            by=submission.owner, submission=submission, justification="The trained model for the store."
        )
        entries = list(submission.export.entries.all())
        export_decide(
            by=approved["admin1"],
            export=submission.export,
            decisions={e.pk: "reject" if e.path in held else "release" for e in entries},
            seen={e.pk: e.sha256 for e in entries},
            comment="model files only",
        )
        submission.refresh_from_db()
        return submission

    return make


@pytest.fixture
def api():
    """An API client signed in with a fresh token of `user` having `scopes` (default: all)."""
    from accounts.services import api_token_create

    def make(user, scopes=None):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(by=user, scopes=scopes).key}")
        return client

    return make


def snapshot() -> tuple:
    """Everything a refused registration must leave as it was: rows and blobs."""
    from modelstore import blobs
    from modelstore.models import ModelAlias, ModelEvent, ModelFile, ModelVersion, RegisteredModel

    rows = tuple(m.objects.count() for m in (RegisteredModel, ModelVersion, ModelFile, ModelAlias, ModelEvent))
    return rows, tuple(blobs.stored_keys())
