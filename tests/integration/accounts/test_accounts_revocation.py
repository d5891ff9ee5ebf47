"""Rejecting, disabling and rotating take MLflow access away at once, and cancel unfinished work."""

import pytest
from django.test import Client

from tests.conftest import make_zip
from tests.helpers import sign_in_with_second_factor

from .conftest import MlflowAs, mail_text, page_credentials

pytestmark = pytest.mark.services

CODE = {"main.py": "print('training')\n", "requirements.txt": ""}


def staff_client(user) -> Client:
    client = Client()
    sign_in_with_second_factor(client, user)
    return client


def test_rejecting_an_approved_researcher_revokes_mlflow_and_cancels_submissions(mailbox, make_staff, make_researcher):
    from accounts.models import Researcher
    from submissions.models import Submission
    from submissions.services import submission_create

    steward = make_staff()
    researcher = make_researcher("carol")
    old = MlflowAs(researcher.mlflow_username, researcher.mlflow_password)
    assert old.log_metric(researcher.mlflow_experiment_id, "loss", 0.5).status_code == 200
    submission = submission_create(by=researcher.user, upload=make_zip(CODE))
    admin = staff_client(steward)
    reject_url = f"/admin/accounts/researcher/{researcher.pk}/reject/"

    # Without a reason nothing happens: the form says what is missing.
    page = admin.post(reject_url, {"apply": "1", "reason": "  "})
    assert page.status_code == 200 and "This field is required." in page.content.decode()
    researcher.refresh_from_db()
    assert researcher.status == Researcher.Status.APPROVED and old.whoami_status() == 200

    reason = "The project is outside the data-use agreement."
    response = admin.post(reject_url, {"apply": "1", "reason": reason}, follow=True)
    assert "Rejected: carol" in response.content.decode()

    # MLflow refuses the old password at once, for every call.
    assert old.whoami_status() == 401
    assert old.log_metric(researcher.mlflow_experiment_id, "loss", 0.4).status_code == 401
    submission.refresh_from_db()
    assert submission.status == Submission.Status.CANCELLED
    assert "account was rejected" in submission.reason

    researcher.refresh_from_db()
    assert researcher.status == Researcher.Status.REJECTED and researcher.mlflow_access == "none"
    assert researcher.events.filter(action="rejected", by=steward, reason=reason).count() == 1
    rejected_mail = [m for m in mailbox.wait_for(researcher.user.email, 3) if "not approved" in m["Subject"]]
    assert rejected_mail and reason in mail_text(rejected_mail[0])

    # They can still sign in and read why; they can no longer submit.
    researcher_client = staff_client(researcher.user)
    page = researcher_client.get("/accounts/profile/").content.decode()
    assert "Your application was not approved" in page and reason in page
    assert 'id="mlflow-password"' not in page


def test_disabling_signs_out_and_revokes_token_and_mlflow(mailbox, make_staff, make_researcher):
    from rest_framework.authtoken.models import Token

    from accounts.services import api_token_create

    steward = make_staff()
    researcher = make_researcher("dave")
    api_token_create(by=researcher.user)
    old = MlflowAs(researcher.mlflow_username, researcher.mlflow_password)
    assert old.whoami_status() == 200
    signed_in = staff_client(researcher.user)
    assert signed_in.get("/accounts/profile/").status_code == 200

    # In bulk, from the list: the action asks for the reason first.
    admin = staff_client(steward)
    bulk = {"action": "disable_selected", "_selected_action": [researcher.pk]}
    page = admin.post("/admin/accounts/researcher/", bulk).content.decode()
    assert "Disable 1 researcher(s)" in page and "dave" in page
    reason = "Left the project."
    admin.post("/admin/accounts/researcher/", {**bulk, "apply": "1", "reason": reason})

    assert old.whoami_status() == 401
    assert not Token.objects.filter(user=researcher.user).exists()
    response = signed_in.get("/accounts/profile/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    login = Client().post("/accounts/login/", {"login": researcher.user.email, "password": "whatever-it-was"})
    assert login.status_code in (200, 302)
    assert "_auth_user_id" not in login.client.session

    # Disabling again changes nothing and mails nobody twice.
    admin.post("/admin/accounts/researcher/", {**bulk, "apply": "1", "reason": reason})
    assert researcher.events.filter(action="disabled").count() == 1
    assert len([m for m in mailbox.wait_for(researcher.user.email, 2) if "disabled" in m["Subject"]]) == 1


def test_rotating_the_mlflow_password_retires_the_old_one(make_researcher):
    researcher = make_researcher("erin")
    client = staff_client(researcher.user)
    _, before = page_credentials(client.get("/accounts/profile/").content.decode())
    response = client.post("/accounts/profile/mlflow-password/", follow=True)
    page = response.content.decode()
    assert "Your MLflow password was changed. The old one no longer works." in page
    username, after = page_credentials(page)
    assert after != before
    assert MlflowAs(username, before).whoami_status() == 401
    assert MlflowAs(username, after).whoami_status() == 200
    assert researcher.events.filter(action="mlflow_password_rotated", by=researcher.user).count() == 1
