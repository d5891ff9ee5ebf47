"""A researcher in Debian's chromium browses the model store, searches it and sorts it by a metric,
opens a model's page, registers a new version from a released submission and makes it the
default; staff list every model and version. Screenshots of each page go to var/screenshots/."""

from __future__ import annotations

import json

import pytest

from modelstore import services
from modelstore.models import ModelAlias
from tests.integration.modelstore.conftest import (  # noqa: F401 (fixtures)
    FOLDER,
    approved,
    finished_submission,
    released,
    store,
    users,
)

from .test_accounts_browser import (
    SHOTS,
    browser,  # noqa: F401 (fixture)
)
from .test_exports_review_browser import signed_in

pytestmark = [pytest.mark.browser]

VIEWS = ("LCC", "LMLO", "RCC", "RMLO")
CARD = {
    "summary": "Estimates how likely a screening mammography case (four views) is malignant.",
    "intended_use": "research use only",
    "not_for": "Diagnosis, triage or any decision about a patient.",
    "mechanism": "A small CNN trained from scratch on single views resized to 256×208, right views mirrored; "
    "the case scores as its most suspicious view.",
    "training_data": {"split": "train split (38 images); checked on the test split (4 images)"},
    "validation_and_performance": "On the test split at the last epoch: accuracy 0.750.",
    "entrypoint": "predict.py:Model",
    "inputs": [
        {
            "name": view,
            "description": f"the {view} view: an 8-bit PNG or CLaM's 12-bit NPY (uint16)",
            "formats": ["image/png", "application/x-npy"],
            "datatype": "UINT16",
            "shape": [-1, -1],
            "max_dims": [8192, 8192],
        }
        for view in VIEWS
    ],
    "outputs": [
        {"name": "malignancy_probability", "datatype": "FP32", "shape": [1], "description": "in [0, 1]"},
        {"name": "view_probabilities", "datatype": "FP32", "shape": [4], "description": "in view order"},
        {"name": "label", "datatype": "BYTES", "shape": [1], "description": "malignant or benign"},
    ],
    "licence": "CC-BY-4.0",
    "contact": "the researcher who registered the model",
    "warnings": [
        "Trained on a small sample; its scores say nothing about clinical performance.",
        "Not validated on scanners, sites or populations other than CLaM's.",
    ],
}
FILES = {**FOLDER, "model/m2d-model.json": json.dumps(CARD).encode(), "results.csv": b"epoch,test_auc\n1,0.7\n"}


@pytest.fixture
def export_storage(settings, tmp_path):
    """The local export root only: the live server reads it in this process."""
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


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"models-{name}.png"), full_page=True)


def with_metrics(submission, **metrics):
    submission.metrics = metrics
    submission.save(update_fields=["metrics"])
    return submission


def test_browse_register_and_set_default_in_a_browser(browser, live_server, approved, released):  # noqa: F811
    owner, other, admin = approved["owner"], approved["other"], approved["admin1"]
    first = with_metrics(released(FILES, owner=owner), test_auc=0.71, test_accuracy=0.75, test_loss=0.62)
    services.model_register(by=owner, submission=first, paths=["model/"], name="clam-malignancy", label="1.0",
                            visibility="approved")  # fmt: skip
    iris = with_metrics(released(FILES, owner=other), test_auc=0.64, test_accuracy=0.9, test_loss=0.3)
    services.model_register(by=other, submission=iris, paths=["model/"], name="toy-iris", visibility="approved")
    second = with_metrics(released(FILES, owner=owner), test_auc=0.83, test_accuracy=0.8, test_loss=0.48)

    # --- browse and search --------------------------------------------------------------------
    page = signed_in(browser, live_server, owner)
    page.goto(live_server.url + "/")
    page.get_by_role("link", name="Models", exact=True).click()
    page.get_by_role("heading", name="Models").wait_for()
    assert "clam-malignancy" in page.locator("#models").inner_text()
    assert "toy-iris" in page.locator("#models").inner_text()
    shot(page, "01-store")
    page.get_by_label("Data set").select_option("clam")
    page.get_by_label("Sort by").select_option("-metric:test_auc")
    page.get_by_role("button", name="Show").click()
    table = page.locator("#models").inner_text()
    assert "clam-malignancy" in table and "toy-iris" not in table and "0.7100" in table
    shot(page, "02-search")

    # --- the model's page ---------------------------------------------------------------------
    page.get_by_role("link", name="clam-malignancy").click()
    page.get_by_role("heading", name="clam-malignancy").wait_for()
    assert page.locator("#default-version").inner_text() == "version 1"
    assert "research use only" in page.locator("#card").inner_text()
    assert page.locator("#card-inputs tbody tr").count() == 4
    assert "Not validated on scanners" in page.locator("#card-warnings").inner_text()
    assert "0.7100" in page.locator("#version-metrics").inner_text()
    assert page.locator("#metrics svg").count() == 0  # one version: nothing to chart across
    shot(page, "03-model")

    # --- register a new version from another released submission ------------------------------
    page.locator("#register").get_by_label("From the released files of").select_option(str(second.pk))
    page.locator("#register-form").wait_for()
    assert page.locator('#register-form input[value="model/"]').is_checked()
    page.locator("#register-form").get_by_label("Label").fill("2.0")
    shot(page, "04-register-form")
    page.locator("#register-form").get_by_role("button", name="Register").click()
    page.get_by_text("Registered clam-malignancy version 2.").wait_for()
    assert page.locator('#versions tr[data-version="2"]').inner_text().count("registered") == 1
    assert page.locator("#metrics svg").count() == 3  # each metric across the two versions
    shot(page, "05-registered")

    # --- make it the default -----------------------------------------------------------------
    page.locator('#versions tr[data-version="2"]').get_by_role("button", name="Set default").click()
    page.get_by_text("Version 2 is now the default of clam-malignancy.").wait_for()
    assert page.locator("#default-version").inner_text() == "version 2"
    assert "default" in page.locator('#versions tr[data-version="2"]').inner_text()
    assert ModelAlias.objects.get(model__name="clam-malignancy", name="default").version.number == 2
    shot(page, "06-default")

    # --- staff see every model and version -----------------------------------------------------
    page = signed_in(browser, live_server, admin, width=1400)
    page.goto(live_server.url + "/models/")
    page.get_by_role("link", name="All models and versions").click()
    page.get_by_role("heading", name="All models and versions").wait_for()
    assert page.locator('#all-models tr[data-model="clam-malignancy"]').count() == 2
    shot(page, "07-staff")
