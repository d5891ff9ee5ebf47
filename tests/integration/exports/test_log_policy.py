"""A researcher never sees more of a log than the policy allows: not on the portal, not in the
e-mail, not in the summary the CLI and API print. Admins read it whole and can release it."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from exports.models import ExportEvent
from exports.reports import submission_summary
from runner.naming import log_dir
from submissions.notifications import status_changed
from tests.helpers import mail_text, sign_in_with_second_factor

from .conftest import seen_on_page
from .test_release_flow import fetch

LINES = [f"epoch {i:04d} patient-row-{i:04d} loss 0.{i:04d}" for i in range(600)]
TRACEBACK = "\n".join(["Traceback (most recent call last):"] + LINES[:300] + ["ValueError: bad row"])


@pytest.fixture
def failed_submission(settings, export_storage, users, finished_submission):
    settings.M2D_LOG_TAIL_LINES = 6
    settings.M2D_LOG_TAIL_BYTES = 200
    submission = finished_submission(
        users["owner"],
        {"report.txt": b"r\n"},
        status="failed",
        failure_stage="run",
        reason="main.py exited with code 1.\n" + TRACEBACK,
        run_log_tail="\n".join(LINES[-40:]),
    )
    folder = log_dir(submission.pk)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.log").write_text("\n".join(LINES) + "\n")
    return submission


def shown_lines(text: str) -> set[str]:
    return {line for line in LINES if line in text}


def assert_within_policy(*blocks: str) -> None:
    """Each block (the log tail, the failure reason) holds only whole lines from the last 6 of
    what it quotes, at most 200 bytes of them; nothing earlier ever shows."""
    for block in blocks:
        seen = shown_lines(block)
        assert seen, "the tail is missing altogether"
        assert seen <= set(LINES[-6:]) | set(LINES[294:300]), sorted(seen)
        assert sum(len(line) + 1 for line in seen) <= 200 + 1


def pre(page: str, element_id: str) -> str:
    return re.search(rf'<pre id="{element_id}"[^>]*>(.*?)</pre>', page, re.S).group(1)


def test_portal_mail_and_summary_follow_the_policy(failed_submission, users, client, mailbox):
    submission = failed_submission
    client.force_login(users["owner"])
    page = client.get(reverse("submissions:detail", args=[submission.pk])).content.decode()
    assert_within_policy(pre(page, "run-log"), pre(page, "reason"))
    assert shown_lines(page) == shown_lines(pre(page, "run-log") + pre(page, "reason"))
    assert LINES[-1] in page and "main.py exited with code 1." in page
    assert "earlier bytes are not" in page
    assert reverse("exports:full_log", args=[submission.pk, "run"]) not in page
    assert client.get(reverse("exports:full_log", args=[submission.pk, "run"])).status_code == 404

    status_changed(submission.pk, "failed")
    mail = mail_text(mailbox.wait_for(users["owner"].email, 1)[-1])
    reason, _, log_tail = mail.partition("Last lines of the run log:")
    assert_within_policy(reason, log_tail)
    assert LINES[-1] in log_tail and "main.py exited with code 1." in reason

    summary = submission_summary(submission)
    assert_within_policy(summary["log_tail"], summary["reason"])
    assert summary["log_tail"].endswith(LINES[-1])


def test_admin_reads_the_whole_log_and_can_release_it(failed_submission, users, client, settings):
    submission = failed_submission
    sign_in_with_second_factor(client, users["admin1"])
    response = client.get(reverse("exports:full_log", args=[submission.pk, "run"]))
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    assert shown_lines(body) == set(LINES)
    assert submission.export_events.filter(action=ExportEvent.Action.LOG_READ, by=users["admin1"]).exists()

    # The researcher asks for the full log with the release; an admin releases it like a file.
    client.force_login(users["owner"])
    page = client.get(reverse("submissions:detail", args=[submission.pk])).content.decode()
    assert 'name="log-run"' in page
    client.post(
        reverse("exports:request", args=[submission.pk]),
        {"justification": "I need the full log to debug row handling.", "log-run": "1"},
    )
    sign_in_with_second_factor(client, users["admin1"])
    log_file = submission.export.entries.get(source="log")
    assert log_file.display_path == "platform-logs/run.log"
    client.post(
        reverse("exports:review", args=[submission.export.pk]),
        {
            **seen_on_page(client, submission.export),
            f"decision-{log_file.pk}": "release",
            "action": "decide",
            "comment": "no patient data in it",
        },
    )
    client.force_login(users["owner"])
    page = client.get(reverse("submissions:detail", args=[submission.pk])).content.decode()
    link = re.search(r'<code>platform-logs/run.log</code>(?:(?!</tr>).)*?href="(/exports/download/[^"]+)"', page, re.S)
    full = fetch(client, link.group(1)).decode()
    assert shown_lines(full) == set(LINES)


COLOURED = "\x1b[91mERROR: No matching distribution found for nosuchpkg==9.9\x1b[0m"
BUILD_LOG = "\r\n".join(
    [
        "Step 5/9 : RUN /opt/m2d/install-requirements",
        "\x1b]0;pip install\x07Collecting nosuchpkg==9.9\r  Downloading \x1b[32m50%\x1b[0m",
        COLOURED,
    ]
)


def test_terminal_codes_never_reach_the_researcher(settings, users, client, mailbox, finished_submission):
    """pip colours its errors; the page, the mail and the summary the API and CLI print show the
    words, not the escape codes, and a long reason wraps on the page instead of running off it."""
    long_line = "could not install: " + "requirement-" * 30
    submission = finished_submission(
        users["owner"],
        {},
        status="failed",
        failure_stage="build",
        reason=f"The image could not be built: {long_line}\n{COLOURED}",
        build_log_tail=BUILD_LOG,
    )
    folder = log_dir(submission.pk)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "build.log").write_text(BUILD_LOG + "\n")
    client.force_login(users["owner"])
    page = client.get(reverse("submissions:detail", args=[submission.pk])).content.decode()
    status_changed(submission.pk, "failed")
    mail = mail_text(mailbox.wait_for(users["owner"].email, 1)[-1]).replace("\r\n", "\n")  # the wire's line ends
    summary = submission_summary(submission)

    for shown in (pre(page, "reason"), pre(page, "build-log"), mail, summary["reason"], summary["log_tail"]):
        assert "ERROR: No matching distribution found for nosuchpkg==9.9" in shown
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", shown), repr(shown)
        assert "[91m" not in shown and "[0m" not in shown
    assert "Collecting nosuchpkg==9.9" in pre(page, "build-log")
    assert re.search(r'<pre id="reason" class="wrap">', page)
