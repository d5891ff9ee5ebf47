"""The whole way in: sign-up, the verification mail, waiting, approval, and MLflow credentials that
work for the researcher's own experiment and for nothing else."""

import re

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from tests.helpers import sign_in_with_second_factor

from .conftest import MlflowAs, confirmation_path, mail_text, page_credentials, signup

pytestmark = pytest.mark.services


def test_signup_verification_approval_and_own_mlflow_experiment(client, mailbox, make_staff, make_researcher):
    from accounts.models import AccountEvent, Researcher

    steward = make_staff()
    email = "ada.lovelace@example.org"

    response = signup(client, email)
    assert response.status_code == 302 and response["Location"] == "/accounts/confirm-email/"
    assert "We have sent an email to you for verification" in client.get(response["Location"]).content.decode()

    # The real mail carries the link; following it and confirming signs the researcher in.
    (verification,) = mailbox.wait_for(email, 1)
    assert verification["Subject"].startswith("[M2D]")
    link = confirmation_path(verification)
    assert "Confirm" in client.get(link).content.decode()
    response = client.post(link, follow=True)
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == "/accounts/profile/"
    assert "Waiting for approval" in page and "waiting for approval" in page
    assert "API tokens are available once your account is approved." in page

    # The approvers are told that someone is waiting, with the statement they need to decide.
    (waiting,) = mailbox.wait_for(steward.email, 1)
    assert "Ada Lovelace is waiting for approval" in waiting["Subject"]
    body = mail_text(waiting)
    assert "image-level classifier" in body and "University of Example" in body
    researcher = Researcher.objects.get(user__email=email)
    assert f"/admin/accounts/researcher/{researcher.pk}/change/" in body

    # Pending: the upload page refuses, and so does the API-token page.
    assert "Your account is not approved (yet)" in client.get(reverse("submissions:upload")).content.decode()
    refused = client.post("/accounts/profile/api-token/", {"action": "create"})
    assert refused.status_code == 403
    assert "API tokens are for approved researchers; this account is waiting for approval." in refused.content.decode()

    # The steward sees the statement in the list and approves with one click.
    staff_client = Client()
    sign_in_with_second_factor(staff_client, steward)
    listing = staff_client.get("/admin/accounts/researcher/?status__exact=pending").content.decode()
    assert "Ada Lovelace" in listing and f"/admin/accounts/researcher/{researcher.pk}/approve/" in listing
    response = staff_client.post(f"/admin/accounts/researcher/{researcher.pk}/approve/", follow=True)
    assert "Ada Lovelace is approved; MLflow user" in response.content.decode()

    # The account page shows the credentials (the mail only points there), and they work in
    # MLflow for the researcher's own experiment.
    page = client.get("/accounts/profile/").content.decode()
    username, password = page_credentials(page)
    assert len(password) >= 24
    approved = mailbox.wait_for(email, 2)[-1]
    assert "your account is approved" in approved["Subject"]
    assert settings.PORTAL_URL + "/accounts/profile/" in mail_text(approved)
    assert password not in mail_text(approved)
    assert re.search(r'data-copy="mlflow-password"', page)
    mine = MlflowAs(username, password)
    experiment_id = mine.experiment_id(username)
    logged = mine.log_metric(experiment_id, "auc", 0.875)
    assert logged.status_code == 200, logged.text
    history = mine.get("/metrics/get-history", run_id=logged.run_id, metric_key="auc").json()
    assert [m["value"] for m in history["metrics"]] == [0.875]

    # Another researcher's experiment: refused, and not even listed.
    other = make_researcher("bob")
    assert MlflowAs(other.mlflow_username, other.mlflow_password).log_metric(other.mlflow_experiment_id, "x", 1).ok
    assert mine.get("/experiments/get", experiment_id=other.mlflow_experiment_id).status_code == 403
    assert mine.get("/experiments/get-by-name", experiment_name=other.mlflow_username).status_code == 403
    assert mine.log_metric(other.mlflow_experiment_id, "auc", 0.1).status_code == 403
    assert mine.visible_experiments() == [username]

    actions = list(researcher.events.values_list("action", "by"))
    assert actions == [
        (AccountEvent.Action.SIGNED_UP, None),
        (AccountEvent.Action.EMAIL_VERIFIED, researcher.user_id),
        (AccountEvent.Action.APPROVED, steward.pk),
        (AccountEvent.Action.MLFLOW_PROVISIONED, None),
    ]


def test_approving_twice_changes_nothing(mailbox, make_staff):
    from accounts.services import researcher_approve, researcher_create
    from tracking.client import MlflowAdmin

    steward = make_staff()
    researcher = researcher_create(username="grace", email="grace@example.org", full_name="Grace Hopper")
    first = researcher_approve(by=steward, researcher=researcher)
    second = researcher_approve(by=steward, researcher=researcher)
    assert second.mlflow_password == first.mlflow_password and second.mlflow_username == "grace"
    assert researcher.events.filter(action="approved").count() == 1
    assert len(mailbox.wait_for("grace@example.org", 1)) == 1
    assert MlflowAdmin().usernames().count("grace") == 1
    assert MlflowAs("grace", first.mlflow_password).whoami_status() == 200


def test_create_researcher_command_prints_working_credentials(transactional_db, capsys):
    import json

    from django.core.management import call_command

    call_command("create_researcher", "henry", "--email", "Henry@Example.org", "--approve", "--full-name", "Henry")
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == "approved" and printed["mlflow_experiment"] == "henry"
    henry = MlflowAs(printed["mlflow_username"], printed["mlflow_password"])
    assert henry.log_metric(printed["mlflow_experiment_id"], "f1", 0.5).status_code == 200
    # The address is taken as verified: the researcher can sign in at once (once given a password).
    call_command("create_researcher", "henry", "--email", "henry@example.org", "--password", "Henry-pass-for-tests-5")
    client = Client()
    response = client.post("/accounts/login/", {"login": "henry@example.org", "password": "Henry-pass-for-tests-5"})
    assert response.status_code == 302 and response["Location"] == "/submissions/"
