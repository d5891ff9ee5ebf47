"""`m2d models …` against a live portal (a web process on the test database): list, register from a
released export, show, set the default, point and delete an alias, retire, and the API's refusals
as plain messages."""

from __future__ import annotations

import json
import os

import pytest

from accounts.services import api_token_create
from modelstore.models import ModelAlias, ModelVersion
from tests.conftest import _worker_database_url, free_port
from tests.reliability.test_restarts import start_web

from .test_cli import run_m2d


@pytest.fixture
def export_storage(settings, tmp_path):
    """A local export root and model store the web process shares with this test."""
    settings.M2D_EXPORT_ROOT = tmp_path / "exports"
    settings.M2D_EXPORT_ROOT.mkdir()
    settings.VAR_DIR = tmp_path / "var"
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(settings.M2D_EXPORT_ROOT)},
        },
    }
    return "local"


@pytest.fixture
def portal(store, settings, tmp_path):
    port = free_port()
    web = start_web(
        port,
        {
            **os.environ,
            "DATABASE_URL": _worker_database_url(),
            "M2D_EXPORT_STORAGE": "local",
            "M2D_EXPORT_ROOT": str(settings.M2D_EXPORT_ROOT),
            "M2D_MODEL_STORE_ROOT": settings.STORAGES["models"]["OPTIONS"]["location"],
        },
    )
    yield f"http://127.0.0.1:{port}"
    web.terminate()
    web.wait(timeout=30)


def env_for(portal: str, user) -> dict:
    return {**os.environ, "M2D_URL": portal, "M2D_TOKEN": api_token_create(by=user).key}


def test_register_show_default_alias_retire(portal, released, approved, tmp_path):
    owner = approved["owner"]
    env = env_for(portal, owner)
    first, second = released(), released()

    empty = run_m2d(["models", "list"], env, tmp_path)
    assert empty.returncode == 0 and "No models you may see yet" in empty.stdout

    card = tmp_path / "card.json"
    card.write_text(json.dumps({"summary": "Four views in, one probability out.", "warnings": ["research only"]}))
    done = run_m2d(
        ["models", "register", str(first.pk), "clam-malignancy", "model/", "--label", "1.0", "--card", str(card)],
        env,
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Registered clam-malignancy version 1." in out and "Aliases: default" in out
    assert "weights.pt" in out and "predict.py" in out  # the files, as the store holds them
    assert "Summary: Four views in, one probability out." in out  # the sent card over the released one
    assert f"{portal}/models/clam-malignancy/?version=1" in out

    again = run_m2d(["models", "register", str(second.pk), "clam-malignancy", "model/"], env, tmp_path)
    assert again.returncode == 0 and "version 2." in again.stdout

    listing = run_m2d(["models", "list"], env, tmp_path)
    assert listing.returncode == 0
    row = next(line for line in listing.stdout.splitlines() if line.startswith("clam-malignancy"))
    assert row.split()[1:4] == ["1", owner.username, "clam"]

    moved = run_m2d(["models", "set-default", "clam-malignancy", "2"], env, tmp_path)
    assert moved.returncode == 0 and "version 2 is now the default" in moved.stdout
    assert ModelAlias.objects.get(model__name="clam-malignancy", name="default").version.number == 2

    assert run_m2d(["models", "alias", "clam-malignancy", "first", "1"], env, tmp_path).returncode == 0
    shown = run_m2d(["models", "show", "clam-malignancy"], env, tmp_path)
    assert shown.returncode == 0
    assert "Default version: 2" in shown.stdout and "first → 1" in shown.stdout
    lines = shown.stdout.splitlines()
    assert any(line.strip().startswith("1 (1.0)") and "registered" in line and "[first]" in line for line in lines)
    one = run_m2d(["models", "show", "clam-malignancy", "first"], env, tmp_path)
    assert one.returncode == 0 and "clam-malignancy version 1 (1.0): registered" in one.stdout
    unknown = run_m2d(["models", "show", "clam-malignancy", "nothing"], env, tmp_path)
    assert unknown.returncode == 2 and "clam-malignancy has no version nothing" in unknown.stderr

    # The API's refusals reach the user as its message, with a non-zero exit.
    refused = run_m2d(["models", "retire", "clam-malignancy", "2"], env, tmp_path)
    assert refused.returncode == 2 and "is the default of clam-malignancy" in refused.stderr
    retired = run_m2d(["models", "retire", "clam-malignancy", "1"], env, tmp_path)
    assert retired.returncode == 0 and "retired" in retired.stdout
    assert ModelVersion.objects.get(model__name="clam-malignancy", number=1).state == "retired"
    # Retiring a version drops its aliases (default aside).
    assert not ModelAlias.objects.filter(model__name="clam-malignancy", name="first").exists()


def test_refusals_say_what_to_do(portal, released, approved, tmp_path):
    owner, other = approved["owner"], approved["other"]
    submission = released()
    env = env_for(portal, owner)

    bad_name = run_m2d(["models", "register", str(submission.pk), "Clam Model", "model/"], env, tmp_path)
    assert bad_name.returncode == 2 and "Name the model <dataset>-<task>" in bad_name.stderr
    held = run_m2d(["models", "register", str(submission.pk), "clam-malignancy", "scratch.bin"], env, tmp_path)
    assert held.returncode == 2 and "has no released file 'scratch.bin'" in held.stderr
    no_card = run_m2d(
        ["models", "register", str(submission.pk), "clam-malignancy", "model/", "--card", "missing.json"],
        env,
        tmp_path,
    )
    assert no_card.returncode == 2 and "missing.json: no such file" in no_card.stderr

    assert (
        run_m2d(["models", "register", str(submission.pk), "clam-malignancy", "model/"], env, tmp_path).returncode == 0
    )
    stranger = env_for(portal, other)
    theirs = run_m2d(["models", "register", str(submission.pk), "clam-other", "model/"], stranger, tmp_path)
    assert theirs.returncode == 2 and "is not yours" in theirs.stderr
    # A private model is absent for others: the same answer as a name that does not exist.
    hidden = run_m2d(["models", "show", "clam-malignancy"], stranger, tmp_path)
    assert hidden.returncode == 2 and "clam-malignancy" in hidden.stderr
    assert "clam-malignancy" not in run_m2d(["models", "list"], stranger, tmp_path).stdout
