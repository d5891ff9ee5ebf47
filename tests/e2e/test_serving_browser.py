"""The owner of a registered model, in Debian's chromium, scales a version to one worker on the
model's page, sees it ready with its cold start, and reads the lines that ask it; the curl line
from the page then answers. Screenshots go to var/screenshots/."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import zipfile

import numpy as np
import pytest

from accounts.services import api_token_create
from modelstore.services import model_register
from runner import serving as agent
from serving.models import Deployment, ServeWorker
from serving.services import deployment_scale
from tests.integration.modelstore.conftest import (  # noqa: F401 (fixtures)
    approved,
    finished_submission,
    released,
    store,
    users,
)
from tests.integration.serving.conftest import export_storage  # noqa: F401 (fixture)
from tests.integration.serving.test_serving import FILES, png

from .test_accounts_browser import (
    SHOTS,
    browser,  # noqa: F401 (fixture)
)
from .test_exports_review_browser import signed_in

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.services]


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"serving-{name}.png"), full_page=True)


@pytest.fixture
def toy_model(released, settings, tmp_path):  # noqa: F811
    """A registered toy model whose submission's image this engine can build from its zip."""
    settings.M2D_QUEUE_OPS = "serving-browser-reconcile-by-hand"  # the test plays the reconciler
    serve_dir = f"/tmp/m2d-serve-{os.getpid()}"  # a socket's path must stay under 108 bytes
    settings.M2D_SERVE_DIR = type(tmp_path)(serve_dir)
    submission = released(FILES, held=())
    archive = f"submissions/serving-{submission.pk}.zip"
    (settings.MEDIA_ROOT / "submissions").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(settings.MEDIA_ROOT / archive, "w") as zf:
        zf.writestr("main.py", "print('trained')\n")
        zf.writestr("requirements.txt", "")
    submission.archive, submission.image_id = archive, ""
    submission.save(update_fields=["archive", "image_id"])
    version = model_register(
        by=submission.owner, submission=submission, paths=["model/"], name="toy-scoring", visibility="approved"
    )
    yield version
    deployment_scale(by=submission.owner, version=version, min_workers=0, max_workers=0)
    agent.reconcile()
    shutil.rmtree(serve_dir, ignore_errors=True)


def test_the_owner_scales_a_model_to_one_worker_and_asks_it(browser, live_server, toy_model, tmp_path):  # noqa: F811
    owner = toy_model.model.owner
    page = signed_in(browser, live_server, owner)
    page.goto(f"{live_server.url}/models/toy-scoring/")
    page.get_by_role("heading", name="toy-scoring").wait_for()
    assert page.locator("#serving-state").inner_text().strip() == "not deployed"
    assert page.locator('td[data-serving="1"]').inner_text().strip() == "not deployed"
    shot(page, "01-not-deployed")

    page.locator("#scale-form").get_by_label("Workers kept ready").fill("1")
    page.locator("#scale-form").get_by_label("at most").fill("1")
    page.locator("#scale-form").get_by_role("button", name="Scale").click()
    page.get_by_text("toy-scoring version 1 scaled to 1–1 workers").wait_for()
    assert "0 ready" in page.locator("#serving-state").inner_text()
    shot(page, "02-scaled")

    agent.reconcile()  # what the maintenance worker does on the scale's message
    deployment = Deployment.objects.get(version=toy_model)
    assert deployment.workers.filter(state=ServeWorker.State.READY).count() == 1, list(
        deployment.workers.values("state", "reason")
    )
    page.reload()
    state = page.locator("#serving-state").inner_text()
    assert "1 ready" in state and re.search(r"cold start \d+\.\d s", state), state
    assert "1 ready" in page.locator('td[data-serving="1"]').inner_text()
    curl = page.locator("#ask-curl").inner_text().strip()
    assert curl == f"curl --user {owner.email}:TOKEN {live_server.url}/predictions/toy-scoring -T view.png"
    assert "m2d predict toy-scoring view.png" in page.locator("#ask-m2d").inner_text()
    page.locator("#how-to-ask").scroll_into_view_if_needed()
    shot(page, "03-ready")

    # The line from the page, with a real token and file, answers.
    (tmp_path / "view.png").write_bytes(png(np.array([[10, 20], [30, 40]])))
    token = api_token_create(by=owner, scopes=["predict"]).key
    asked = subprocess.run(
        shlex.split(curl.replace("TOKEN", token)) + ["-sS", "--fail-with-body"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert json.loads(asked.stdout)["score"] == 50.0
