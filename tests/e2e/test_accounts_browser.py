"""A person in Debian's chromium signs up, verifies the address from the real mail, waits; a
steward signs in with a TOTP code, approves one researcher and rejects another; the researcher
copies their MLflow password. Screenshots of each page go to var/screenshots/."""

import os
from pathlib import Path

import pytest

from tests.integration.accounts.conftest import SIGNUP, confirmation_path, totp_code

pytestmark = [pytest.mark.browser, pytest.mark.services]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture
def browser(monkeypatch):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are
    # still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"accounts-{name}.png"), full_page=True)


def test_signup_and_approval_in_a_browser(browser, live_server, mailbox):
    from allauth.account.models import EmailAddress
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
    from django.contrib.auth import get_user_model
    from django.core.cache import cache

    from accounts.models import Researcher
    from accounts.services import researcher_create

    cache.clear()
    steward = get_user_model().objects.create_superuser("steward", "steward@hospital.example", "Steward-pass-77")
    EmailAddress.objects.create(user=steward, email=steward.email, verified=True, primary=True)
    secret = generate_totp_secret()
    TOTP.activate(steward, secret)
    researcher_create(username="oscar", email="oscar@example.org", full_name="Oscar Other", institution="Elsewhere")
    url = live_server.url
    email = "hedy.lamarr@example.org"

    # --- the researcher signs up -------------------------------------------------------------
    person = browser.new_context(
        permissions=["clipboard-read", "clipboard-write"], viewport={"width": 1200, "height": 900}
    )
    page = person.new_page()
    page.goto(url + "/")
    page.get_by_role("link", name="Sign up", exact=True).click()
    page.get_by_label("Full name").fill("Hedy Lamarr")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Institution").fill(SIGNUP["institution"])
    page.get_by_label("Intended use").fill(SIGNUP["intended_use"])
    page.get_by_label("Password", exact=True).fill(SIGNUP["password1"])
    page.get_by_label("Password (again)").fill(SIGNUP["password1"])
    shot(page, "01-signup")
    page.get_by_role("button", name="Sign Up").click()
    page.get_by_role("heading", name="Verify Your Email Address").wait_for()
    shot(page, "02-verification-sent")

    (mail,) = mailbox.wait_for(email, 1)
    page.goto(url + confirmation_path(mail))
    shot(page, "03-confirm-email")
    page.get_by_role("button", name="Confirm").click()
    page.get_by_role("heading", name="Waiting for approval").wait_for()
    assert page.locator("#account-status").inner_text() == "waiting for approval"
    shot(page, "04-waiting-for-approval")

    # --- the steward signs in with a second factor and decides --------------------------------
    steward_page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    steward_page.goto(url + "/admin/")
    steward_page.get_by_label("E-mail or user name").fill(steward.email)
    steward_page.get_by_label("Password").fill("Steward-pass-77")
    shot(steward_page, "05-sign-in")
    steward_page.get_by_role("button", name="Sign In").click()
    steward_page.get_by_label("Code").fill(totp_code(secret))
    shot(steward_page, "06-second-factor")
    steward_page.get_by_role("button", name="Sign In").click()
    steward_page.get_by_role("link", name="Researchers", exact=True).first.click()
    steward_page.get_by_role("link", name="waiting for approval").click()
    shot(steward_page, "07-admin-pending")

    steward_page.get_by_role("row", name="Hedy Lamarr").get_by_role("button", name="Approve").click()
    steward_page.get_by_text("Hedy Lamarr is approved; MLflow user").wait_for()
    shot(steward_page, "08-admin-approved")

    steward_page.get_by_role("row", name="Oscar Other").get_by_role("link", name="Reject…").click()
    steward_page.get_by_label("Reason").fill(
        "We could not verify your affiliation; please sign up with your work address."
    )
    shot(steward_page, "09-admin-reject-reason")
    steward_page.get_by_role("button", name="Reject").click()
    steward_page.get_by_text("Rejected: Oscar Other.").wait_for()
    assert Researcher.objects.get(user__username="oscar").status == Researcher.Status.REJECTED

    # --- the researcher finds and copies their MLflow login -----------------------------------
    page.goto(url + "/accounts/profile/")
    researcher = Researcher.objects.get(user__email=email)
    assert page.locator("#mlflow-username").input_value() == researcher.mlflow_username
    page.locator("[data-copy=mlflow-password]").click()
    assert page.evaluate("navigator.clipboard.readText()") == researcher.mlflow_password
    assert page.locator("[data-copy=mlflow-password]").inner_text() == "Copied"
    shot(page, "10-account-mlflow")
    page.locator("#create-api-token").click()
    assert len(page.locator("#api-token-value").input_value()) == 40
    shot(page, "11-api-token")

    # --- and chooses which steps mail them: no "code received" mail -----------------------------
    page.locator("#email-received").uncheck()
    page.locator("#save-email-preferences").click()
    page.get_by_text("Saved: you get the e-mails ticked below.").wait_for()
    assert not page.locator("#email-received").is_checked()
    assert Researcher.objects.get(user__email=email).email_steps == ["ended", "decisions"]
    shot(page, "12-email-preferences")


def test_staff_member_sets_up_an_authenticator_before_the_admin_opens(browser, live_server):
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model
    from django.core.cache import cache

    cache.clear()
    user = get_user_model().objects.create_superuser("newsteward", "new.steward@hospital.example", "Steward-pass-88")
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)

    page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
    page.goto(live_server.url + "/admin/")
    page.get_by_label("E-mail or user name").fill(user.email)
    page.get_by_label("Password").fill("Steward-pass-88")
    page.get_by_role("button", name="Sign In").click()
    page.get_by_text("Staff accounts need a second factor").wait_for()
    shot(page, "12-staff-confirm-password")
    page.get_by_label("Password").fill("Steward-pass-88")
    page.get_by_role("button", name="Confirm").click()
    secret = page.locator("#authenticator_secret").input_value()
    page.get_by_label("Authenticator code").fill(totp_code(secret))
    shot(page, "13-staff-authenticator-setup")
    page.get_by_role("button", name="Activate").click()
    page.goto(live_server.url + "/admin/")
    page.get_by_role("link", name="Researchers", exact=True).first.wait_for()
