"""Approval while MLflow is down: approved at once, MLflow pending and visible to the admin, and
completed (with exactly one MLflow user) once MLflow is back."""

import os
import subprocess
import time

import pytest
import requests
from django.conf import settings
from django.test import Client

from tests.helpers import sign_in_with_second_factor

from .conftest import MlflowAs, page_credentials

pytestmark = pytest.mark.services


def mlflow_container() -> str:
    return f"m2d-{os.environ['M2D_STACK']}-mlflow"


def wait_for_mlflow(timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(settings.MLFLOW_URL + "/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError("MLflow did not come back")


@pytest.fixture
def mlflow_stopped():
    if "M2D_STACK" not in os.environ:
        pytest.skip("needs the test stack's MLflow container (run through `make test`)")
    subprocess.run(["docker", "stop", "-t", "5", mlflow_container()], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["docker", "start", mlflow_container()], check=True, capture_output=True)
        wait_for_mlflow()


def test_approval_while_mlflow_is_down_completes_when_it_is_back(mlflow_stopped, make_staff):
    from accounts.models import Researcher
    from accounts.services import provision_pending, researcher_create
    from submissions.services import SubmissionRefused, ensure_may_submit
    from tracking.client import MlflowAdmin

    steward = make_staff()
    researcher = researcher_create(username="frank", email="frank@example.org", full_name="Frank Outage")
    admin = Client()
    sign_in_with_second_factor(admin, steward)

    response = admin.post(f"/admin/accounts/researcher/{researcher.pk}/approve/", follow=True)
    assert "Frank Outage is approved, but MLflow could not be reached" in response.content.decode()
    researcher.refresh_from_db()
    assert researcher.status == Researcher.Status.APPROVED
    assert researcher.mlflow_access == Researcher.MlflowAccess.PENDING

    # The admin sees it, in a column and under a filter.
    listing = admin.get("/admin/accounts/researcher/?mlflow=pending").content.decode()
    assert "Frank Outage" in listing and "MLflow: pending" in listing
    assert "Frank Outage" not in admin.get("/admin/accounts/researcher/?mlflow=active").content.decode()

    # The researcher is told it is being set up, and cannot submit yet (not blamed for it).
    researcher_client = Client()
    researcher_client.force_login(researcher.user)
    assert "Your MLflow account is being set up" in researcher_client.get("/accounts/profile/").content.decode()
    with pytest.raises(SubmissionRefused, match="still being set up"):
        ensure_may_submit(researcher.user)

    # Retrying while it is still down changes nothing and says why.
    assert provision_pending() == 0
    retry = {"action": "retry_mlflow", "_selected_action": [researcher.pk]}
    response = admin.post("/admin/accounts/researcher/", retry, follow=True)
    assert "MLflow is unreachable; nothing changed." in response.content.decode()

    # MLflow comes back; the periodic retry completes the approval.
    subprocess.run(["docker", "start", mlflow_container()], check=True, capture_output=True)
    wait_for_mlflow()
    assert provision_pending() == 1
    assert provision_pending() == 0
    researcher.refresh_from_db()
    assert researcher.mlflow_access == Researcher.MlflowAccess.ACTIVE
    ensure_may_submit(researcher.user)

    # The admin retry and a repeated approval do not make a second user or change the password.
    admin.post("/admin/accounts/researcher/", retry)
    admin.post(f"/admin/accounts/researcher/{researcher.pk}/approve/")
    assert MlflowAdmin().usernames().count("frank") == 1
    username, password = page_credentials(researcher_client.get("/accounts/profile/").content.decode())
    assert (username, password) == ("frank", researcher.mlflow_password)
    mine = MlflowAs(username, password)
    assert mine.log_metric(mine.experiment_id("frank"), "accuracy", 0.9).status_code == 200
