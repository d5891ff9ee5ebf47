"""An admin reviews an export in Debian's chromium (previews, flags, per-file decisions with a
comment); the researcher then downloads the released model and registers it in the model store. Screenshots of each
page go to var/screenshots/."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.helpers import sign_in_with_second_factor
from tests.integration.exports.conftest import finished_submission, users  # noqa: F401 (fixtures)
from tests.integration.exports.test_manifest_flags import DATASET_IMAGE, npy, torch_like_checkpoint

from .test_accounts_browser import SHOTS, browser  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser]


@pytest.fixture(autouse=True)
def own_storage(settings, tmp_path):
    """Export and model storage of this test's own: submission numbers start again with each test
    database, and a folder left in var/ by an earlier run would join this run's export."""
    settings.M2D_EXPORT_ROOT = tmp_path / "exports"
    settings.M2D_EXPORT_ROOT.mkdir()
    local = "django.core.files.storage.FileSystemStorage"
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {"BACKEND": local, "OPTIONS": {"location": str(settings.M2D_EXPORT_ROOT)}},
        "models": {"BACKEND": local, "OPTIONS": {"location": str(tmp_path / "models")}},
    }


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"exports-{name}.png"), full_page=True)


def signed_in(browser, live_server, user, width=1300):  # noqa: F811
    """A browser context with the user's session, staff with a second factor (sign-in itself is
    tested with the accounts)."""
    client = Client()
    if user.is_staff:
        sign_in_with_second_factor(client, user)
    else:
        client.force_login(user)
    context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )
    return context.new_page()


def test_review_and_release_in_a_browser(browser, live_server, users, finished_submission, tmp_path):  # noqa: F811
    import numpy as np

    from exports.services import export_request_release
    from modelstore.models import ModelVersion

    owner, admin = users["owner"], users["admin1"]
    model = torch_like_checkpoint()
    submission = finished_submission(
        owner,
        {
            "model.pt": model,
            "metrics.csv": b"epoch,loss,auc\n1,0.61,0.70\n2,0.43,0.78\n3,0.35,0.81\n",
            "leak/1.png": (settings.M2D_DATASET_DIR / DATASET_IMAGE).read_bytes(),
            "embeddings.npy": npy(np.zeros((64, 128), dtype=np.float16)),
        },
    )
    export_request_release(by=owner, submission=submission, justification="Trained weights and curves for the paper.")

    # --- the admin reviews -------------------------------------------------------------------
    page = signed_in(browser, live_server, admin, width=1400)
    page.goto(live_server.url + "/")
    page.get_by_role("link", name="Review exports").click()
    row = page.get_by_role("row").filter(has_text=owner.username)
    assert "4" in row.inner_text()
    shot(page, "01-queue")
    row.get_by_role("link", name="Review").click()
    page.get_by_role("heading", name=f"Export of submission {submission.pk}").wait_for()
    assert page.locator("#justification").inner_text() == "Trained weights and curves for the paper."
    leak = page.locator("tr", has=page.locator("code", has_text="leak/1.png")).first
    assert "identical to a data set file" in leak.inner_text()
    assert leak.locator("img").evaluate("img => img.naturalWidth") > 0  # the thumbnail renders
    assert "64 × 128" in page.locator("tr", has=page.locator("code", has_text="embeddings.npy")).first.inner_text()
    shot(page, "02-review")

    def choose(path: str, decision: str) -> None:
        page.locator("tr", has=page.locator("code", has_text=path)).first.get_by_label(decision).check()

    choose("model.pt", "release")
    choose("metrics.csv", "release")
    choose("leak/1.png", "reject")
    choose("embeddings.npy", "reject")
    page.get_by_label("Comment for the researcher").fill("The image is a data set file; arrays stay inside.")
    page.get_by_role("button", name="Apply the decisions above").click()
    page.get_by_text("Done: 2 released, 2 rejected.").wait_for()
    assert page.locator("#export-status").inner_text() == "reviewed"
    shot(page, "03-decided")

    # --- the researcher downloads and registers ---------------------------------------------
    page = signed_in(browser, live_server, owner)
    page.goto(f"{live_server.url}/submissions/{submission.pk}/")
    model_row = page.locator("tr", has=page.locator("code", has_text="model.pt")).first
    assert "released" in model_row.inner_text()
    # Rejected files are counted, never named to the researcher.
    assert page.locator("code", has_text="leak/1.png").count() == 0
    assert "2 files rejected by the reviewer" in page.locator("#rejected-summary").inner_text()
    panel = page.locator("#exports").inner_text()
    assert "Ask for release" not in panel  # decided: at most the full logs are left to ask for
    shot(page, "04-owner-released")
    with page.expect_download() as download:
        model_row.get_by_role("link", name="Download").click()
    assert download.value.suggested_filename == "model.pt"
    assert hashlib.sha256(Path(download.value.path()).read_bytes()).hexdigest() == hashlib.sha256(model).hexdigest()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download all released files (zip)").click()
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as archive:
        assert sorted(archive.namelist()) == ["metrics.csv", "model.pt"]

    page.get_by_role("link", name="Register released files as a model").click()
    form = page.locator("#register-form")
    assert form.locator('input[value="model.pt"]').is_checked()
    form.get_by_label("Model name").fill("clam-resnet-toy")
    form.get_by_label("Summary").fill("Image-level classifier trained on CLaM.")
    shot(page, "05-register-form")
    form.get_by_role("button", name="Register").click()
    page.get_by_text("Registered clam-resnet-toy version 1.").wait_for()
    assert "Image-level classifier trained on CLaM." in page.locator("#summary").inner_text()
    shot(page, "06-registered")
    page.get_by_role("navigation").get_by_role("link", name="Models").click()
    assert "clam-resnet-toy" in page.locator("#models").inner_text()
    shot(page, "07-models")
    assert ModelVersion.objects.filter(model__owner=owner, model__name="clam-resnet-toy", number=1).exists()

    # The model's files download from its page in the store.
    page.get_by_role("link", name="clam-resnet-toy").first.click()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download (zip)").first.click()
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as archive:
        names = archive.namelist()
        assert any(name.endswith("model.pt") for name in names), names
    shot(page, "08-model-page")
