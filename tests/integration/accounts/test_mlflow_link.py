"""The MLflow links on the portal open the researcher's own experiment, not MLflow's home page."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse


@pytest.fixture
def researcher(db):
    from accounts.models import Researcher
    from accounts.services import researcher_create

    researcher = researcher_create(username="mara", email="mara@example.org", password="pw-mara-mara-mara")
    # Approved with an experiment as far as the portal is concerned; these tests never reach MLflow.
    Researcher.objects.filter(pk=researcher.pk).update(
        status=Researcher.Status.APPROVED,
        mlflow_username="mara",
        mlflow_experiment_id="42",
        mlflow_provisioned_at="2026-01-01T00:00Z",
    )
    researcher.refresh_from_db()
    return researcher


def menu_link(page: str) -> str:
    return re.search(r'<a id="menu-mlflow" href="([^"]+)"', page).group(1)


def test_the_menu_and_the_account_page_open_the_researchers_experiment(researcher, client, settings):
    settings.MLFLOW_PUBLIC_URL = "https://mlflow.hospital.example"
    client.force_login(researcher.user)
    for url in (reverse("submissions:list"), reverse("accounts:profile")):
        page = client.get(url).content.decode()
        assert menu_link(page) == "https://mlflow.hospital.example/#/experiments/42", url
    profile = client.get(reverse("accounts:profile")).content.decode()
    assert re.search(r'id="mlflow-experiment" href="https://mlflow.hospital.example/#/experiments/42"', profile)
    # The tracking URI to paste stays the server's own address.
    assert "export MLFLOW_TRACKING_URI=https://mlflow.hospital.example\n" in profile


def test_without_an_experiment_the_menu_opens_mlflows_home(client, settings, django_user_model):
    settings.MLFLOW_PUBLIC_URL = "https://mlflow.hospital.example"
    client.force_login(django_user_model.objects.create_user("staffer", "s@example.org", "pw", is_staff=True))
    page = client.get(reverse("accounts:profile")).content.decode()
    assert menu_link(page) == "https://mlflow.hospital.example"
