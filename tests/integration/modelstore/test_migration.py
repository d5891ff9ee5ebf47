"""The models registered in the exports app move into the store (modelstore 0002) with their
bytes, names normalised and clashes resolved; API tokens made before scopes keep working with
every scope (accounts 0004). Migrates a real database back, writes old rows, migrates forward."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("exports", "0002_airlock"), ("modelstore", "0001_store"), ("accounts", "0003_email_every_step")]


@pytest.fixture
def storages_here(settings, tmp_path):
    settings.M2D_EXPORT_ROOT = tmp_path / "exports"
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "exports")},
        },
        "models": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "models")},
        },
    }
    return tmp_path


@pytest.fixture
def old_state(transactional_db):
    executor = MigrationExecutor(connection)
    moved = {app for app, _ in BEFORE}
    targets = [node for node in executor.loader.graph.leaf_nodes() if node[0] not in moved] + BEFORE
    executor.migrate(targets)
    yield executor.loader.project_state(targets).apps
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # leave the database as the other tests expect it


def _old_models(apps, root):
    User = apps.get_model("auth", "User")
    Submission = apps.get_model("submissions", "Submission")
    Export = apps.get_model("exports", "Export")
    ExportFile = apps.get_model("exports", "ExportFile")
    Old = apps.get_model("exports", "RegisteredModel")
    Token = apps.get_model("authtoken", "Token")
    alice = User.objects.create(username="Alice.K", email="a@example.org")
    bob = User.objects.create(username="bob", email="b@example.org")
    Token.objects.create(user=alice, key="a" * 40)
    made = []
    for owner, name, version, content, keep in [
        (alice, "CLaM Classifier", "1", b"alice weights one", True),
        (alice, "CLaM Classifier", "2", b"alice weights two", True),
        (bob, "clam-classifier", "1", b"bob weights", True),
        (alice, "resnet", "a b", b"resnet weights", True),
        (bob, "gone", "1", b"bytes deleted since", False),
    ]:
        submission = Submission.objects.create(
            owner=owner, status="succeeded", archive="x.zip", archive_sha256="0" * 64
        )
        export = Export.objects.create(submission=submission, folder="", status="reviewed")
        key = f"{submission.pk}/model.pt"
        if keep:
            (root / "exports" / str(submission.pk)).mkdir(parents=True)
            (root / "exports" / key).write_bytes(content)
        digest = hashlib.sha256(content).hexdigest()
        file = ExportFile.objects.create(
            export=export, path="model.pt", size=len(content), sha256=digest, kind="pytorch",
            storage_key=key, state="released",
        )  # fmt: skip
        Old.objects.create(
            owner=owner, name=name, version=version, description=f"{name} {version}", submission=submission,
            file=file, file_path="model.pt", file_sha256=digest, file_size=len(content), format="pytorch",
            metrics={"auc": 0.7}, metrics_source="mlflow",
        )  # fmt: skip
        made.append((name, version, digest))
    return made


def test_registered_models_move_into_the_store(storages_here, old_state):
    _old_models(old_state, storages_here)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    from accounts.models import TokenScopes
    from modelstore import blobs
    from modelstore.models import ModelEvent, ModelFile, RegisteredModel

    store = {
        m.name: (m.owner.username, [(v.number, v.label) for v in m.versions.order_by("number")])
        for m in RegisteredModel.objects.all()
    }
    assert store == {
        "clam-classifier": ("Alice.K", [(1, "1"), (2, "2")]),
        "clam-classifier-bob": ("bob", [(1, "1")]),
        "clam-resnet": ("Alice.K", [(1, "a-b")]),
        "clam-gone": ("bob", [(1, "1")]),
    }
    model = RegisteredModel.objects.get(name="clam-classifier")
    assert model.aliases.get(name="default").version.number == 1 and (model.dataset, model.task) == (
        "clam",
        "classifier",
    )
    second = model.versions.get(number=2)
    assert second.card == {"intended_use": "research use only", "metrics": {"auc": 0.7}, "summary": "CLaM Classifier 2"}
    (file,) = second.files.all()
    assert blobs.read(file.storage_key, 100) == b"alice weights two"
    assert file.sha256 == hashlib.sha256(b"alice weights two").hexdigest()
    # A file whose bytes were gone is kept as a record, and the trail says what happened.
    gone = ModelFile.objects.get(version__model__name="clam-gone")
    assert gone.storage_key == "" and gone.size == len(b"bytes deleted since")
    assert "could not be read" in ModelEvent.objects.get(model__name="clam-gone").comment
    assert ModelEvent.objects.filter(action="migrated").count() == 5
    # The old table is gone; the old token has every scope.
    assert "exports_registeredmodel" not in connection.introspection.table_names()
    assert TokenScopes.objects.get(token__key="a" * 40).scopes == list(TokenScopes.ALL)
