"""The disclosure report in Debian's chromium: the reviewer reads the verdicts beside the files, a
release of the model over the threshold without a reason is refused, with one it waits for a
second admin, who releases it; the researcher reads the verdicts on the submission page.
Screenshots go to var/screenshots/."""

from __future__ import annotations

import pytest
from django.urls import reverse

from disclosure.facts import AttackFigures, ModelAssessment, TableCheck
from disclosure.services import disclosure_record_model, disclosure_record_table, disclosure_request
from exports.services import export_request_release
from tests.integration.exports.conftest import finished_submission, users  # noqa: F401 (fixtures)

from .test_accounts_browser import SHOTS, browser  # noqa: F401 (fixture)
from .test_exports_review_browser import own_storage, signed_in  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser]
FILES = {
    "model/m2d-model.json": b'{"entrypoint": "predict.py:Model"}\n',
    "model/predict.py": b"class Model: ...\n",
    "model/weights.pt": b"\x00weights" * 64,
    "by-site.csv": b"site,n\nA,40\nB,31\n",
}


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"disclosure-{name}.png"), full_page=True)


def test_a_model_over_the_threshold_is_released_by_two_admins_in_a_browser(
    browser,  # noqa: F811
    live_server,
    users,  # noqa: F811
    finished_submission,  # noqa: F811
    settings,
):
    settings.M2D_EXPORT_TWO_PERSON_RULE = False
    owner, admin1, admin2 = users["owner"], users["admin1"], users["admin2"]
    submission = finished_submission(owner, FILES)
    model, table = disclosure_request(submission=submission, paths=list(FILES))
    attack = AttackFigures("worst-case membership", 0.97, 0.94, 1.0, 0.9, 0.0)
    disclosure_record_model(
        report=model, assessment=ModelAssessment("model/", attacks=(attack,), n_train=127, n_test=33, seconds=32)
    )
    disclosure_record_table(report=table, check=TableCheck("by-site.csv", is_table=True, cells=2, min_count=10))
    export_request_release(by=owner, submission=submission, justification="The model for the validation study.")

    page = signed_in(browser, live_server, admin1, width=1400)
    page.goto(live_server.url + reverse("exports:review", args=[submission.export.pk]))
    report = page.locator("#disclosure tr", has=page.locator("code", has_text="model/")).first
    assert "over the threshold" in report.inner_text()
    assert "AUC 0.97" in report.inner_text() and "127 training and 33 held-out cases" in report.inner_text()
    assert "advantage 0.90, p < 0.001" in report.locator("td").last.inner_text()
    weights = page.locator("#review-form tr", has=page.locator("code", has_text="model/weights.pt")).first
    assert "release needs a second admin and a written reason" in weights.inner_text()
    shot(page, "01-review")

    page.get_by_role("button", name="Release every waiting file").click()
    page.get_by_text("Its release needs a second admin and a written reason").wait_for()
    shot(page, "02-refused")
    page.get_by_label("Comment for the researcher").fill("The DPO agreed: the model is for the partner site only.")
    page.get_by_role("button", name="Release every waiting file").click()
    page.get_by_text("(waiting for a second admin)").wait_for()
    assert "approved by" in page.locator("#review-form tr", has_text="model/weights.pt").first.inner_text()
    shot(page, "03-first-admin")

    page = signed_in(browser, live_server, admin2, width=1400)
    page.goto(live_server.url + reverse("exports:review", args=[submission.export.pk]))
    page.get_by_label("Comment for the researcher").fill("Second admin: agreed, the DPO's note is on file.")
    page.get_by_role("button", name="Release every waiting file").click()
    page.get_by_text("Done: 3 released.").wait_for()
    assert page.locator("#export-status").inner_text() == "reviewed"

    page = signed_in(browser, live_server, owner)
    page.goto(live_server.url + reverse("submissions:detail", args=[submission.pk]))
    verdicts = page.locator("#disclosure-verdicts").inner_text()
    assert "model model/: membership attack AUC 0.97: this model reveals who was in the training set" in verdicts
    assert "table by-site.csv: passes ACRO's table rules" in verdicts
    shot(page, "04-owner")
