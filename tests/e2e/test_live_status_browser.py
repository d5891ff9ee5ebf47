"""A researcher in Debian's chromium uploads code and watches it go through its states on the
submission's page without reloading it, until the per-epoch chart appears; another job is
cancelled from its page while it runs. Screenshots go to var/screenshots/."""

from __future__ import annotations

import time

import pytest

from submissions.services import submission_create
from tests.conftest import make_zip

from .test_accounts_browser import SHOTS, browser  # noqa: F401 (fixture)
from .test_exports_review_browser import signed_in

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.docker]

TRAIN = """
import time
import mlflow
with mlflow.start_run():
    for epoch in range(6):
        mlflow.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
        mlflow.log_metric("auc", 0.5 + epoch * 0.07, step=epoch)
        print(f"epoch {epoch}", flush=True)
        time.sleep(1.5)
"""
SLEEP = "import time\nprint('warming up', flush=True)\ntime.sleep(600)\n"


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"live-{name}.png"), full_page=True)


def status_of(page) -> str:
    return page.locator("#status").inner_text().strip().lower()


def test_upload_and_watch_until_the_chart(browser, live_server, celery_workers, make_researcher, tmp_path):  # noqa: F811
    researcher = make_researcher()
    page = signed_in(browser, live_server, researcher.user)
    problems = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("requestfailed", lambda request: problems.append(f"{request.url}: {request.failure}"))
    archive = tmp_path / "submission.zip"
    archive.write_bytes(make_zip({"main.py": TRAIN, "requirements.txt": "mlflow==3.17.2\n"}).getvalue())

    page.goto(live_server.url + "/submissions/new/")
    # The progress bar's readings, kept across the page swap that follows the upload.
    page.evaluate(
        """() => new MutationObserver(() => {
              const seen = JSON.parse(sessionStorage.getItem('progress') || '[]');
              seen.push(document.getElementById('upload-progress-label').textContent);
              sessionStorage.setItem('progress', JSON.stringify(seen));
           }).observe(document.getElementById('upload-progress-label'), {childList: true})"""
    )
    page.set_input_files("input[type=file]", str(archive))
    page.get_by_role("button", name="Upload").click()
    page.get_by_role("heading", name="Submission").wait_for()
    progress = page.evaluate("() => JSON.parse(sessionStorage.getItem('progress') || '[]')")
    assert progress and "100%" in progress[-1], progress
    assert "/submissions/" in page.url and page.url.rstrip("/").split("/")[-1].isdigit()
    shot(page, "01-received")

    # From here on the page is never loaded again: a reload would drop this marker.
    page.evaluate("() => { window.stillTheSamePage = true; }")
    seen = []
    deadline = time.monotonic() + 120
    while True:
        current = status_of(page)
        if not seen or seen[-1] != current:
            seen.append(current)
            if current == "running":
                page.locator("#charts figure").first.wait_for(timeout=60_000)  # drawn while it runs
                shot(page, "02-running")
        if current in ("succeeded", "failed"):
            break
        assert time.monotonic() < deadline, f"still {current} after 120 s; browser: {problems}"
        time.sleep(0.2)
    assert seen[-1] == "succeeded", page.locator("#live").inner_text()
    assert "running" in seen and seen.index("running") > 0
    assert page.evaluate("() => window.stillTheSamePage") is True

    loss = page.locator("figure[data-metric=loss]")
    assert "6 points" in loss.inner_text() and "0.1667 at step 5" in loss.inner_text()
    assert loss.locator("polyline").get_attribute("points").count(",") == 6
    assert page.locator("figure[data-metric=auc]").count() == 1
    assert "epoch 5" in page.locator("#run-log").inner_text()
    assert page.locator("#cancel").count() == 0  # nothing left to cancel
    timeline = page.locator("#timeline").inner_text()
    assert all(word in timeline for word in ("received", "building", "queued", "running", "succeeded"))
    # The upload's message is still shown, and still true now that the run is over.
    submission_id = page.url.rstrip("/").split("/")[-1]
    assert page.locator(".messages").inner_text().strip() == (
        f"Submission {submission_id} received. This page follows it as it runs."
    )
    shot(page, "03-finished")


def test_cancel_a_running_job_from_its_page(browser, live_server, celery_workers, make_researcher):  # noqa: F811
    researcher = make_researcher()
    submission = submission_create(by=researcher.user, upload=make_zip({"main.py": SLEEP, "requirements.txt": ""}))
    page = signed_in(browser, live_server, researcher.user)
    page.goto(f"{live_server.url}/submissions/{submission.pk}/")
    page.locator("#status", has_text="running").wait_for(timeout=240_000)
    # Its output is kept back while it runs; the page says when it will show.
    page.locator("#run-log-withheld", has_text="once the run has ended").wait_for(timeout=60_000)
    assert page.locator("#run-log").count() == 0
    shot(page, "04-running-cancel")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#cancel").click()
    page.locator("#status", has_text="cancelled").wait_for()
    assert f"Submission {submission.pk} cancelled." in page.locator(".messages").inner_text()
    assert page.locator("#cancel").count() == 0
    assert "Cancelled by you" in page.locator("#reason").inner_text()
    shot(page, "05-cancelled")
    submission.refresh_from_db()
    assert submission.status == "cancelled"
    # Its container was stopped, not left to sleep: the run slot takes the next job at once.
    following = submission_create(by=researcher.user, upload=make_zip({"main.py": "print(1)", "requirements.txt": ""}))
    page.goto(f"{live_server.url}/submissions/{following.pk}/")
    page.locator("#status", has_text="succeeded").wait_for(timeout=120_000)


def test_admin_dashboard_shows_the_running_job(browser, live_server, celery_workers, make_researcher, client):  # noqa: F811
    from django.contrib.auth import get_user_model

    from accounts.services import researcher_create

    researcher = make_researcher("dora")
    researcher_create(username="waiting-wendy", email="wendy@example.org", password="pw-waiting-wendy")
    submission = submission_create(by=researcher.user, upload=make_zip({"main.py": SLEEP, "requirements.txt": ""}))
    client.force_login(researcher.user)
    assert client.get("/submissions/dashboard/").status_code == 404  # researchers have none

    admin = get_user_model().objects.create_user("dash-admin", "dash@example.org", "pw", is_staff=True)
    page = signed_in(browser, live_server, admin)
    page.goto(live_server.url + "/")
    page.get_by_role("link", name="Dashboard").click()

    def running_there() -> bool:
        table = page.locator("#running")
        return table.count() == 1 and researcher.user.username in table.inner_text()

    deadline = time.monotonic() + 240
    while not running_there():  # the dashboard refreshes itself every 10 s; an admin may reload
        assert time.monotonic() < deadline, "the job never showed as running"
        time.sleep(1)
        page.reload()
    row = page.locator("#running tr", has_text=researcher.user.username)
    assert "cpu0" in row.inner_text() and " s" in row.inner_text()  # its slot and how long it has run
    assert "1 researcher waiting for approval" in page.locator("#pending-researchers").inner_text()
    shot(page, "06-dashboard")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Cancel").click()
    page.locator("#status", has_text="cancelled").wait_for()
    submission.refresh_from_db()
    assert submission.status == "cancelled" and "an admin" in submission.reason
    # The slot is free again: the next job runs to its end and the dashboard shows no run.
    following = submission_create(by=researcher.user, upload=make_zip({"main.py": "print(1)", "requirements.txt": ""}))
    page.goto(f"{live_server.url}/submissions/{following.pk}/")
    page.locator("#status", has_text="succeeded").wait_for(timeout=120_000)
    page.goto(live_server.url + "/submissions/dashboard/")
    assert "No run in progress." in page.content()
