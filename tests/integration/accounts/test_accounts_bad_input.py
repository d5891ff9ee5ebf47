"""Bad sign-ups and sign-ins are refused with a message that says what to fix, and nothing is stored."""

import pytest
from django.test import Client

from .conftest import SIGNUP, signup

pytestmark = [pytest.mark.django_db(transaction=True)]


def stored_counts():
    from django.contrib.auth import get_user_model

    from accounts.models import Researcher

    return get_user_model().objects.count(), Researcher.objects.count()


def test_a_taken_email_address_is_refused_whatever_its_case(mailbox):
    from accounts.services import researcher_create

    researcher_create(username="dana", email="Dana.Scully@Example.org")
    before = stored_counts()
    response = signup(Client(), "dana.scully@example.org")
    assert response.status_code == 200
    assert "A user is already registered with this email address." in response.content.decode()
    assert stored_counts() == before
    assert mailbox.for_address("dana.scully@example.org") == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"institution": ""}, "This field is required."),
        ({"intended_use": "research"}, "Tell the admins in a sentence or two what you plan to do with the data"),
        ({"password2": "Something-else-entirely-7"}, "You must type the same password each time."),
        ({"password1": "password", "password2": "password"}, "This password is too common."),
        ({"email": "not-an-address"}, "Enter a valid email address."),
    ],
)
def test_incomplete_signups_say_what_to_fix(overrides, message):
    before = stored_counts()
    response = Client().post("/accounts/signup/", {**SIGNUP, "email": "new@example.org", **overrides})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert stored_counts() == before


def test_an_unverified_address_cannot_sign_in(mailbox):
    signup(Client(), "unverified@example.org")
    client = Client()
    response = client.post("/accounts/login/", {"login": "unverified@example.org", "password": SIGNUP["password1"]})
    assert response.status_code == 302 and response["Location"] == "/accounts/confirm-email/"
    assert "_auth_user_id" not in client.session
    assert client.get("/accounts/profile/")["Location"].startswith("/accounts/login/")


def test_repeated_wrong_passwords_are_rate_limited():
    from accounts.services import researcher_create

    researcher_create(username="mallory", email="mallory@example.org", password="Mallory-right-pass-3")
    client = Client()
    for _ in range(5):
        page = client.post("/accounts/login/", {"login": "mallory@example.org", "password": "guess"})
        assert "The email address and/or password you specified are not correct." in page.content.decode()
    # Even the right password is refused now, with a message that says why.
    blocked = client.post("/accounts/login/", {"login": "mallory@example.org", "password": "Mallory-right-pass-3"})
    assert "Too many failed login attempts. Try again later." in blocked.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_pending_researcher_gets_no_api_token_and_cannot_rotate(make_staff):
    from rest_framework.authtoken.models import Token

    from accounts.services import researcher_create

    researcher = researcher_create(username="peggy", email="peggy@example.org", password="Peggy-pass-for-tests-4")
    client = Client()
    client.force_login(researcher.user)
    refused = client.post("/accounts/profile/api-token/", {"action": "create"})
    assert refused.status_code == 403
    assert "API tokens are for approved researchers" in refused.content.decode()
    assert not Token.objects.exists()
    rotate = client.post("/accounts/profile/mlflow-password/")
    assert rotate.status_code == 403
    assert "Only an approved account has MLflow credentials to rotate." in rotate.content.decode()


def test_approved_researchers_create_and_revoke_their_token(make_researcher):
    from rest_framework.authtoken.models import Token

    researcher = make_researcher("quinn")
    client = Client()
    client.force_login(researcher.user)
    page = client.post("/accounts/profile/api-token/", {"action": "create"}, follow=True).content.decode()
    key = Token.objects.get(user=researcher.user).key
    assert key in page and "it is shown only this once" in page
    assert key not in client.get("/accounts/profile/").content.decode()
    page = client.post("/accounts/profile/api-token/", {"action": "revoke"}, follow=True).content.decode()
    assert "Your API token was revoked." in page
    assert not Token.objects.filter(user=researcher.user).exists()


def test_only_staff_decide_and_only_owners_rotate(make_researcher):
    from accounts.services import AccountError, mlflow_password_rotate, researcher_approve, researcher_reject

    alice, bob = make_researcher("alice"), make_researcher("bob")
    with pytest.raises(AccountError, match="Only staff can decide"):
        researcher_reject(by=alice.user, researcher=bob, reason="mine now")
    with pytest.raises(AccountError, match="Only staff can decide"):
        researcher_approve(by=alice.user, researcher=bob)
    with pytest.raises(AccountError, match="your own MLflow password"):
        mlflow_password_rotate(by=alice.user, researcher=bob)
    with pytest.raises(AccountError, match="Give a reason"):
        researcher_reject(by=None, researcher=bob, reason=" ")
    bob.refresh_from_db()
    assert bob.status == "approved"
