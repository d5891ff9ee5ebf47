"""Fixtures for account tests: staff with an authenticator app, sign-ups, and MLflow as a user sees it."""

from __future__ import annotations

import re
import time
from urllib.parse import urlparse

import pytest
import requests
from django.conf import settings
from django.core.cache import cache

from tests.helpers import mail_text  # noqa: F401  (the accounts tests import it from here)

API = "/api/2.0/mlflow"


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """allauth counts attempts in the cache; one test's sign-ups must not throttle the next."""
    cache.clear()
    yield
    cache.clear()


def totp_code(secret: str) -> str:
    """What the staff member's authenticator app shows right now."""
    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


@pytest.fixture
def make_staff(transactional_db):
    """Staff users with a verified e-mail address; with `totp=True`, an authenticator app too."""
    from allauth.account.models import EmailAddress
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
    from django.contrib.auth import get_user_model

    counter = iter(range(1, 1000))

    def factory(*, totp: bool = True, password: str = "Staff-pass-for-tests-1"):
        n = next(counter)
        user = get_user_model().objects.create_superuser(f"steward{n}", f"steward{n}@hospital.example", password)
        EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
        user.totp_secret = None
        if totp:
            user.totp_secret = generate_totp_secret()
            TOTP.activate(user, user.totp_secret)
        user.raw_password = password
        return user

    return factory


SIGNUP = {
    "full_name": "Ada Lovelace",
    "institution": "University of Example, Radiology",
    "intended_use": "Train an image-level classifier for malignant versus benign findings and compare backbones.",
    "password1": "Correct-Horse-Battery-42",
    "password2": "Correct-Horse-Battery-42",
}


def signup(client, email: str, **overrides):
    return client.post("/accounts/signup/", {**SIGNUP, "email": email, **overrides})


def confirmation_path(message) -> str:
    body = mail_text(message)
    match = re.search(r"https?://\S+/accounts/confirm-email/\S+", body)
    assert match, f"no confirmation link in the mail:\n{body}"
    return urlparse(match.group(0)).path


def page_credentials(html: str) -> tuple[str, str]:
    """The MLflow user name and password as the account page shows them."""
    username = re.search(r'id="mlflow-username" type="text" readonly value="([^"]+)"', html)
    password = re.search(r'id="mlflow-password" type="password" readonly value="([^"]+)"', html)
    assert username and password, "the account page shows no MLflow credentials"
    return username.group(1), password.group(1)


class MlflowAs:
    """MLflow's REST API as one person, with their basic-auth credentials."""

    def __init__(self, username: str, password: str):
        self.session = requests.Session()
        self.session.auth = (username, password)
        self.base = settings.MLFLOW_URL

    def get(self, path: str, **params) -> requests.Response:
        return self.session.get(self.base + API + path, params=params, timeout=15)

    def post(self, path: str, body: dict) -> requests.Response:
        return self.session.post(self.base + API + path, json=body, timeout=15)

    def whoami_status(self) -> int:
        return self.get("/users/current").status_code

    def experiment_id(self, name: str) -> str:
        response = self.get("/experiments/get-by-name", experiment_name=name)
        assert response.status_code == 200, response.text
        return response.json()["experiment"]["experiment_id"]

    def visible_experiments(self) -> list[str]:
        response = self.post("/experiments/search", {"max_results": 1000})
        assert response.status_code == 200, response.text
        return [e["name"] for e in response.json().get("experiments", [])]

    def log_metric(self, experiment_id: str, key: str, value: float) -> requests.Response:
        now = int(time.time() * 1000)
        created = self.post("/runs/create", {"experiment_id": experiment_id, "start_time": now})
        if created.status_code != 200:
            return created
        run_id = created.json()["run"]["info"]["run_id"]
        metric = {"run_id": run_id, "key": key, "value": value, "timestamp": now, "step": 0}
        logged = self.post("/runs/log-metric", metric)
        logged.run_id = run_id
        return logged
