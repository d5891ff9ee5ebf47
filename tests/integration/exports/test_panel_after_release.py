"""After a decision the export panel says what is left to ask for, and counts what it lists."""

import pytest
from django.urls import reverse

from exports.services import export_decide, export_request_release
from submissions.logpolicy import full_log_path

pytestmark = pytest.mark.django_db(transaction=True)


def panel(client, submission) -> str:
    return client.get(reverse("submissions:detail", args=[submission.pk])).content.decode()


def decide_all(admin, export) -> None:
    entries = list(export.entries.filter(state="held"))
    export_decide(
        by=admin, export=export, decisions={e.pk: "release" for e in entries}, seen={e.pk: e.sha256 for e in entries}
    )


def test_after_release_only_the_logs_are_left_to_ask_for(export_storage, users, finished_submission, client, settings):
    settings.M2D_EXPORT_TWO_PERSON_RULE = False
    owner, admin = users["owner"], users["admin1"]
    submission = finished_submission(owner, {"results.csv": b"auc,0.71\n"})
    log = full_log_path(submission, "run")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("epoch 1\nepoch 2\n")
    export_request_release(by=owner, submission=submission, justification="The results table for the paper.")
    decide_all(admin, submission.export)
    client.force_login(owner)

    page = panel(client, submission)
    assert "Ask for release" not in page
    assert "Ask for the full logs" in page and "Its files were decided on" in page
    assert "written by the run in 1 file." in page  # and nothing more listed

    export_request_release(
        by=owner, submission=submission, justification="The run log, to check the epochs.", logs=("run",)
    )
    decide_all(admin, submission.export)
    page = panel(client, submission)
    assert "written by the run in 1 file; the table also lists the platform-logs/run.log the platform attached." in page
    assert "Ask for" not in page  # nothing is left
