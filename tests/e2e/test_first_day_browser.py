"""What a researcher sees on the pages they meet first, in Debian's chromium. Screenshots go to
var/screenshots/."""

from __future__ import annotations

import re

import pytest

from tests.integration.exports.conftest import finished_submission, users  # noqa: F401 (fixtures)

from .test_accounts_browser import SHOTS, browser  # noqa: F401 (fixture)
from .test_exports_review_browser import signed_in

pytestmark = [pytest.mark.browser]


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"first-day-{name}.png"), full_page=True)


def test_a_failed_build_says_what_happened_in_full(browser, live_server, users, finished_submission):  # noqa: F811
    reason = (
        "The image could not be built: pip could not install a requirement. "
        "requirements.txt line 2: nosuchpkg==9.9 is not on the platform's package index; "
        "ask the platform's admins for it, or remove it if main.py does not import it.\n"
        "\x1b[91mERROR: No matching distribution found for nosuchpkg==9.9\x1b[0m"
    )
    submission = finished_submission(users["owner"], {}, status="failed", failure_stage="build", reason=reason)
    page = signed_in(browser, live_server, users["owner"], width=900)
    page.goto(f"{live_server.url}/submissions/{submission.pk}/")
    box = page.locator("#reason")
    shot(page, "failed-build")
    text = box.inner_text()
    assert "ask the platform's admins for it" in text and "\x1b" not in text and "[91m" not in text
    # Wrapped: nothing runs off its right edge, no horizontal scrolling needed.
    assert box.evaluate("e => e.scrollWidth <= e.clientWidth")


def test_the_upload_hash_says_what_it_is_of(browser, live_server, users, finished_submission):  # noqa: F811
    submission = finished_submission(users["owner"], {})
    page = signed_in(browser, live_server, users["owner"], width=900)
    page.goto(f"{live_server.url}/submissions/{submission.pk}/")
    shot(page, "contents-hash")
    assert "of the files in the zip, not of the zip itself" in page.locator("#contents-sha256").inner_text()


def test_after_the_recovery_codes_staff_are_led_on(browser, live_server, users):  # noqa: F811
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes

    steward = users["admin1"]
    steward.set_password("Steward-pass-for-tests-1")
    steward.save(update_fields=["password"])
    page = signed_in(browser, live_server, steward, width=900)  # sets up the app as at first sign-in
    RecoveryCodes.activate(steward)
    page.goto(f"{live_server.url}/accounts/2fa/recovery-codes/")
    if "/reauthenticate/" in page.url:  # allauth asks for the password before it shows codes
        page.get_by_label("Password").fill("Steward-pass-for-tests-1")
        page.get_by_role("button", name="Confirm").click()
        page.wait_for_url("**/recovery-codes/")
    shot(page, "recovery-codes")
    # The staff menu fits a narrow window: nothing runs off its right edge.
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    page.get_by_role("link", name="admin site").click()
    page.wait_for_url(f"{live_server.url}/admin/")
    assert page.get_by_role("heading", name=re.compile("administration", re.I)).first.is_visible()


def test_the_sign_in_page_says_sign_in(browser, live_server):  # noqa: F811
    page = browser.new_page(viewport={"width": 900, "height": 700})
    page.goto(f"{live_server.url}/accounts/login/")
    shot(page, "sign-in")
    assert page.get_by_role("heading", name="Sign in", exact=True).is_visible()
    assert page.get_by_role("button", name="Sign in", exact=True).is_visible()
    assert page.get_by_role("link", name="Sign in", exact=True).is_visible()  # the menu's


def test_the_account_page_chooses_the_mails(browser, live_server, transactional_db):  # noqa: F811
    from accounts.models import Researcher
    from accounts.services import researcher_create

    researcher = researcher_create(
        username="made-up-3f9a", email="mara.first@example.org", password="pw-mara-first-1", full_name="Mara Jansen"
    )
    Researcher.objects.filter(pk=researcher.pk).update(status=Researcher.Status.APPROVED, mlflow_experiment_id="7")
    page = signed_in(browser, live_server, researcher.user, width=900)
    page.goto(f"{live_server.url}/accounts/profile/")
    page.locator("#email-preferences").scroll_into_view_if_needed()
    shot(page, "account-mails")
    assert page.locator("#signed-in-as").inner_text() == "Mara Jansen"
    assert [box.get_attribute("value") for box in page.locator("#email-preferences input:checked").all()] == [
        "received",
        "ended",
        "decisions",
    ]
