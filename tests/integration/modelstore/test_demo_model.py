"""The demo's model step: the demo admin releases the CLaM run's export through the airlock's
services and the demo researcher registers its model folder, once."""

from __future__ import annotations

import io
import json
from pathlib import Path

from django.core.management import call_command

from modelstore.models import ModelVersion
from tests.integration.modelstore.conftest import FOLDER


def test_the_demo_releases_and_registers_the_clam_model_once(store, approved, finished_submission):
    owner, admin = approved["owner"], approved["admin1"]
    run = finished_submission(owner, dict(FOLDER), original_name="clam-dataset.zip")
    # Deploying it is tested on the demo's own stack (tests/cli/test_make_demo.py).
    arguments = {
        "sample": Path("clam-dataset.zip"),
        "researcher": owner.username,
        "admin": admin.username,
        "wait": 1,
        "workers": 0,
    }

    out = io.StringIO()
    call_command("demo_model", stdout=out, **arguments)
    assert json.loads(out.getvalue()) == {"model": "clam-malignancy", "version": 1, "submission": run.pk}
    version = ModelVersion.objects.get(model__name="clam-malignancy")
    assert version.model.owner == owner and version.model.visibility == "approved"
    assert sorted(version.files.values_list("path", flat=True)) == ["m2d-model.json", "predict.py", "weights.pt"]
    run.refresh_from_db()
    assert {e.state for e in run.export.entries.all()} == {"released"}  # released by the admin, as a reviewer would
    assert run.export_events.filter(action="released", by=admin).exists()

    again = io.StringIO()
    call_command("demo_model", stdout=again, **arguments)
    assert json.loads(again.getvalue())["registered"] == "already"
    assert ModelVersion.objects.count() == 1
