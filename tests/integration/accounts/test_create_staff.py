"""A hospital's first staff member: one command makes the account, the first sign-in leads
through setting up an authenticator app, and the recovery codes page leads on to the work."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from .conftest import totp_code

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_staff_then_first_sign_in_through_the_app_to_the_admin_site(settings):
    settings.PORTAL_URL = "https://m2d.hospital.example"
    out = io.StringIO()
    call_command("create_staff", "Anna.deVries@Hospital.example", "--name", "Anna de Vries", stdout=out)
    printed = out.getvalue()
    assert "Staff account for Anna de Vries <anna.devries@hospital.example>" in printed
    assert "Sign in at https://m2d.hospital.example/accounts/login/" in printed
    assert "authenticator app (TOTP)" in printed
    password = re.search(r"Password \(shown only now\): (\S+)", printed).group(1)

    client = Client()
    # The address counts as verified: the password signs in, and leads straight to the app's set-up.
    signed_in = client.post("/accounts/login/", {"login": "anna.devries@hospital.example", "password": password})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/accounts/2fa/totp/activate/"
    first_page = client.get("/accounts/2fa/totp/activate/", follow=True)
    assert "Staff accounts need a second factor" in first_page.content.decode()
    if first_page.redirect_chain:  # allauth asks for the password once more before adding a factor
        client.post(first_page.redirect_chain[-1][0], {"password": password})
    page = client.get("/accounts/2fa/totp/activate/").content.decode()
    secret = re.search(r'id="authenticator_secret"[^>]*value="([A-Z2-7]+)"', page).group(1)

    activated = client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})
    assert activated.status_code == 302
    codes = client.get(activated["Location"]).content.decode()
    assert 'Continue to the <a href="/admin/">admin site</a>' in codes
    assert 'href="/submissions/dashboard/"' in codes
    assert client.get("/admin/").status_code == 200


def test_create_staff_refuses_an_address_in_use():
    call_command("create_staff", "ward@hospital.example", "--name", "Ward", stdout=io.StringIO())
    with pytest.raises(CommandError, match="exists already"):
        call_command("create_staff", "WARD@hospital.example", "--name", "Ward Again", stdout=io.StringIO())
