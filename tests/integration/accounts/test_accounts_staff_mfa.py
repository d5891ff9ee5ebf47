"""Staff reach the admin site only with a second factor (TOTP), codes computed here as an app would."""

import re

import pytest
from django.test import Client

from .conftest import totp_code

pytestmark = pytest.mark.django_db(transaction=True)


def sign_in(client: Client, user) -> None:
    response = client.post("/accounts/login/", {"login": user.email, "password": user.raw_password})
    assert response.status_code == 302, response.content.decode()


def test_admin_login_page_goes_through_allauth():
    response = Client().get("/admin/login/?next=/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_staff_without_a_second_factor_must_set_one_up_first(make_staff):
    steward = make_staff(totp=False)
    client = Client()
    sign_in(client, steward)

    for page in ("/admin/", "/admin/accounts/researcher/", "/admin/submissions/submission/"):
        response = client.get(page)
        assert response.status_code == 302 and response["Location"] == "/accounts/2fa/totp/activate/", page
    # allauth asks for the password once more before a second factor can be added.
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0].startswith("/accounts/reauthenticate/")
    assert "Staff accounts need a second factor" in response.content.decode()
    response = client.post(
        "/accounts/reauthenticate/?next=/accounts/2fa/totp/activate/", {"password": steward.raw_password}
    )
    assert response["Location"] == "/accounts/2fa/totp/activate/"
    setup = client.get("/accounts/2fa/totp/activate/").content.decode()

    # Setting up the app with the secret the page shows opens the admin site.
    secret = re.search(r'id="authenticator_secret"[^>]*value="([A-Z2-7]+)"', setup)
    assert secret, "the set-up page shows no secret"
    wrong = client.post("/accounts/2fa/totp/activate/", {"code": "000000"})
    assert wrong.status_code == 200 and "Incorrect code." in wrong.content.decode()
    assert client.get("/admin/").status_code == 302
    activated = client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret.group(1))})
    assert activated.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_staff_with_totp_sign_in_with_a_code(make_staff):
    steward = make_staff(totp=True)
    client = Client()
    response = client.post("/accounts/login/", {"login": steward.email, "password": steward.raw_password})
    assert response.status_code == 302 and response["Location"] == "/accounts/2fa/authenticate/"
    # The password alone opens nothing: the admin site sends them back for the code.
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/", follow=True).redirect_chain[-1][0] == "/accounts/2fa/authenticate/"

    wrong = client.post("/accounts/2fa/authenticate/", {"code": "123456"})
    assert "Incorrect code." in wrong.content.decode()
    right = client.post("/accounts/2fa/authenticate/", {"code": totp_code(steward.totp_secret)})
    assert right.status_code == 302
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/accounts/researcher/").status_code == 200


def test_researchers_need_no_second_factor(make_staff):
    from accounts.services import researcher_create

    researcher = researcher_create(username="ivy", email="ivy@example.org", password="Ivy-pass-for-tests-9")
    client = Client()
    response = client.post("/accounts/login/", {"login": "ivy@example.org", "password": "Ivy-pass-for-tests-9"})
    assert response.status_code == 302 and response["Location"] == "/accounts/profile/"
    assert "Two-factor authentication" in client.get("/accounts/profile/").content.decode()
    assert researcher.user.pk == int(client.session["_auth_user_id"])


def test_a_session_that_skipped_the_code_is_asked_for_one(make_staff):
    """An account with an app is not enough: the session itself must have passed the code."""
    steward = make_staff(totp=True)
    client = Client()
    client.force_login(steward)  # a session opened without allauth's code stage
    response = client.get("/admin/accounts/researcher/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/reauthenticate/?next=%2Fadmin%2Faccounts%2Fresearcher%2F"
    assert "Enter a code from your authenticator app" in client.get(response["Location"]).content.decode()
    entered = client.post(response["Location"], {"code": totp_code(steward.totp_secret)})
    assert entered["Location"] == "/admin/accounts/researcher/"
    assert client.get("/admin/accounts/researcher/").status_code == 200
