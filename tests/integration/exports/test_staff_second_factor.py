"""Every page that reviews, releases or shows what a researcher may not see yet opens for staff
only in a session that passed a second factor: without an authenticator app they are sent to set
one up, with one but no code in this session they are asked for a code, and nothing happens."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from exports.models import ExportFile
from exports.services import export_request_release
from runner.naming import log_dir
from tests.integration.accounts.conftest import totp_code

from .conftest import seen_on_page

pytestmark = pytest.mark.parametrize("export_storage", ["local"], indirect=True)

PAGES = {
    "review queue": ("get", lambda e, f: reverse("exports:review_queue"), {}),
    "review page": ("get", lambda e, f: reverse("exports:review", args=[e.pk]), {}),
    "release every waiting file": (
        "post",
        lambda e, f: reverse("exports:review", args=[e.pk]),
        {"action": "release_all", "comment": "ok"},
    ),
    "release one file": ("post", lambda e, f: reverse("exports:review", args=[e.pk]), {"action": "decide"}),
    "add the full log": ("post", lambda e, f: reverse("exports:add_log", args=[e.pk]), {"kind": "run"}),
    "full log": ("get", lambda e, f: reverse("exports:full_log", args=[e.submission_id, "run"]), {}),
    "whole file": ("get", lambda e, f: reverse("exports:file_whole", args=[e.pk, f.pk]), {}),
    "dashboard": ("get", lambda e, f: reverse("submissions:dashboard"), {}),
}


@pytest.fixture
def waiting(export_storage, users, finished_submission):
    """An export waiting for review, with a full run log on the host."""
    submission = finished_submission(users["owner"], {"secret.csv": b"patient,P1\n" * 10})
    folder = log_dir(submission.pk)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.log").write_text("patient-row P1 loss 0.5\n")
    export = export_request_release(by=users["owner"], submission=submission, justification="Results for the paper.")
    return export, export.entries.get()


def request(client, page: str, export, file, form: dict):
    method, url, data = PAGES[page]
    if method == "get":
        return client.get(url(export, file))
    if page == "release one file":
        data = {f"decision-{file.pk}": "release"}
    return client.post(url(export, file), {**form, **data})


def nothing_happened(export, file) -> None:
    file.refresh_from_db()
    assert file.state == ExportFile.State.HELD
    assert list(export.entries.values_list("pk", flat=True)) == [file.pk]  # no log attached
    after_request = export.submission.export_events.exclude(action__in=["collected", "requested"])
    assert not after_request.exists(), list(after_request.values_list("action", flat=True))


@pytest.mark.parametrize("page", PAGES)
def test_staff_without_an_authenticator_app_must_set_one_up(page, users, waiting):
    export, file = waiting
    client = Client()
    client.force_login(users["admin1"])
    response = request(client, page, export, file, {f"seen-{file.pk}": file.sha256})
    assert response.status_code == 302 and response.url == "/accounts/2fa/totp/activate/", page
    shown = client.get(response.url, follow=True).content.decode()
    assert "Staff accounts need a second factor" in shown
    assert b"patient" not in response.content
    nothing_happened(export, file)


@pytest.mark.parametrize("page", PAGES)
def test_staff_with_an_app_enter_a_code_in_this_session_first(page, users, waiting):
    """A session opened without the code stage (here: force_login) is asked for a code; the code
    opens the page it came from."""
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    export, file = waiting
    admin, secret = users["admin1"], generate_totp_secret()
    TOTP.activate(admin, secret)
    client = Client()
    client.force_login(admin)
    response = request(client, page, export, file, {f"seen-{file.pk}": file.sha256})
    path = PAGES[page][1](export, file)
    assert response.status_code == 302 and response.url.startswith("/accounts/2fa/reauthenticate/?next="), page
    assert "Enter a code from your authenticator app" in client.get(response.url).content.decode()
    nothing_happened(export, file)

    entered = client.post(response.url, {"code": totp_code(secret)})
    assert entered.status_code == 302 and entered.url == path
    if PAGES[page][0] == "get":
        assert client.get(path).status_code == 200
    else:
        request(client, page, export, file, seen_on_page(client, export))
        export.refresh_from_db()
        assert export.submission.export_events.exclude(action__in=["collected", "requested"]).exists(), page


def test_signing_in_with_a_code_opens_the_review(users, waiting):
    """The whole way: password, then the code allauth asks for, then the review pages open."""
    from allauth.account.models import EmailAddress
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    export, file = waiting
    admin, secret = users["admin1"], generate_totp_secret()
    TOTP.activate(admin, secret)
    EmailAddress.objects.create(user=admin, email=admin.email, verified=True, primary=True)
    client = Client()
    password = f"pw-admin1-{admin.username.removeprefix('admin1')}-long"
    signed = client.post("/accounts/login/", {"login": admin.username, "password": password})
    assert signed.status_code == 302 and signed.url == "/accounts/2fa/authenticate/"
    assert client.post(signed.url, {"code": totp_code(secret)}).status_code == 302
    for page in ("review queue", "review page", "full log", "whole file", "dashboard"):
        assert request(client, page, export, file, {}).status_code == 200, page


def test_the_rule_can_be_switched_off(settings, users, waiting):
    settings.M2D_STAFF_MFA_REQUIRED = False
    export, file = waiting
    client = Client()
    client.force_login(users["admin1"])
    assert client.get(reverse("exports:review", args=[export.pk])).status_code == 200
    assert client.get(reverse("submissions:dashboard")).status_code == 200
