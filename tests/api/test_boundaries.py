"""Who may do what through the REST API: the token decides, and a researcher sees only their own."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts.services import researcher_create
from submissions.models import Submission
from tests.conftest import make_zip

pytestmark = pytest.mark.services

ENDPOINTS = ["", "logs/", "metrics/", "exports/"]


def test_every_endpoint_needs_a_token(make_researcher, row):
    mine = row(make_researcher().user)
    anonymous = APIClient()
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Token " + "f" * 40)
    for client in (anonymous, wrong):
        assert client.get("/api/v1/submissions/").status_code == 401
        assert client.post("/api/v1/submissions/", {"archive": make_zip({"main.py": ""})}).status_code == 401
        for suffix in ENDPOINTS:
            assert client.get(f"/api/v1/submissions/{mine.pk}/{suffix}").status_code == 401
        assert client.post(f"/api/v1/submissions/{mine.pk}/cancel/").status_code == 401
        assert client.get("/api/v1/downloads/anything/").status_code == 401
    assert Submission.objects.get(pk=mine.pk).status == "queued"


def test_another_researchers_submission_does_not_exist_for_you(make_researcher, api_for, row):
    alice, bob = make_researcher("alice"), make_researcher("bob")
    hers = row(alice.user, metrics={"auc": 0.9})
    bob_api = api_for(bob.user)
    for suffix in ENDPOINTS:
        response = bob_api.get(f"/api/v1/submissions/{hers.pk}/{suffix}")
        assert response.status_code == 404, (suffix, response.content)
        assert "0.9" not in response.content.decode()
    assert bob_api.post(f"/api/v1/submissions/{hers.pk}/cancel/").status_code == 404
    assert Submission.objects.get(pk=hers.pk).status == "queued"
    assert bob_api.get("/api/v1/submissions/").json()["results"] == []
    # Alice still sees and reaches her own.
    alice_api = api_for(alice.user)
    assert [s["id"] for s in alice_api.get("/api/v1/submissions/").json()["results"]] == [hers.pk]
    assert alice_api.get(f"/api/v1/submissions/{hers.pk}/").json()["metrics"] == {"auc": 0.9}


def test_a_revoked_token_stops_working(make_researcher, api_for):
    from accounts.services import api_token_revoke

    researcher = make_researcher()
    client = api_for(researcher.user)
    assert client.get("/api/v1/submissions/").status_code == 200
    api_token_revoke(by=researcher.user)
    assert client.get("/api/v1/submissions/").status_code == 401


def test_staff_see_every_submission(make_researcher, row):
    alice = make_researcher()
    hers = row(alice.user, metrics={"auc": 0.7})
    admin = get_user_model().objects.create_user("api-admin", "admin@example.org", "pw", is_staff=True)
    staff = APIClient()
    staff.force_authenticate(admin)  # admins use the browsable API with their session
    assert hers.pk in [s["id"] for s in staff.get("/api/v1/submissions/").json()["results"]]
    assert staff.get(f"/api/v1/submissions/{hers.pk}/").json()["metrics"] == {"auc": 0.7}


def test_session_login_opens_the_browsable_api(make_researcher, client, row):
    researcher = make_researcher()
    mine = row(researcher.user)
    client.force_login(researcher.user)
    page = client.get("/api/v1/submissions/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"Submission List" in page.content and str(mine.pk).encode() in page.content


def test_an_unapproved_researcher_cannot_submit(transactional_db, api_for):
    pending = researcher_create(username="pending-api", email="pending-api@example.org", password="pw-pending-api")
    client = APIClient()
    client.force_authenticate(pending.user)
    response = client.post("/api/v1/submissions/", {"archive": make_zip({"main.py": "", "requirements.txt": ""})})
    assert response.status_code == 403
    assert "not approved" in response.json()["detail"]
    assert not Submission.objects.filter(owner=pending.user).exists()


def test_a_refused_zip_says_what_to_change_and_stores_nothing(make_researcher, api_for):
    researcher = make_researcher()
    client = api_for(researcher.user)
    response = client.post("/api/v1/submissions/", {"archive": make_zip({"src/main.py": "print(1)"})})
    assert response.status_code == 400
    assert "requirements.txt" in " ".join(response.json()["archive"])
    missing = client.post("/api/v1/submissions/", {})
    assert missing.status_code == 400 and "archive" in missing.json()
    assert not Submission.objects.filter(owner=researcher.user).exists()


def test_list_is_paginated_newest_first_and_filters_by_status(make_researcher, api_for, row):
    researcher = make_researcher()
    ids = [row(researcher.user, status="succeeded" if i % 2 else "failed").pk for i in range(7)]
    client = api_for(researcher.user)
    first = client.get("/api/v1/submissions/?page_size=3").json()
    assert first["count"] == 7 and [s["id"] for s in first["results"]] == ids[::-1][:3]
    second = client.get(first["next"]).json()
    assert [s["id"] for s in second["results"]] == ids[::-1][3:6]
    failed = client.get("/api/v1/submissions/?status=failed").json()
    assert failed["count"] == 4 and {s["status"] for s in failed["results"]} == {"failed"}
    bad = client.get("/api/v1/submissions/?status=exploded")
    assert bad.status_code == 400 and "queued" in bad.json()["status"][0]


def test_queue_position_of_a_waiting_submission(make_researcher, api_for, row):
    alice, bob = make_researcher("alice"), make_researcher("bob")
    first = row(alice.user)
    second = row(bob.user)
    body = api_for(bob.user).get(f"/api/v1/submissions/{second.pk}/").json()
    assert body["status"] == "queued" and body["queue_position"] == 2 and body["finished"] is False
    assert body["page_url"].endswith(f"/submissions/{second.pk}/")
    listed = api_for(alice.user).get("/api/v1/submissions/").json()["results"]
    assert [(s["id"], s["queue_position"]) for s in listed] == [(first.pk, 1)]


def test_cancel_a_waiting_submission_then_again(make_researcher, api_for, row):
    researcher = make_researcher()
    waiting = row(researcher.user)
    client = api_for(researcher.user)
    response = client.post(f"/api/v1/submissions/{waiting.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert "Cancelled by you" in response.json()["reason"]
    again = client.post(f"/api/v1/submissions/{waiting.pk}/cancel/")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_schema_and_docs_are_served_from_this_host(client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/v1/submissions/", "/api/v1/submissions/{id}/cancel/", "/api/v1/submissions/{id}/logs/"} <= set(paths)
    docs = client.get("/api/v1/docs/").content.decode()
    assert "swagger-ui" in docs and "/static/drf_spectacular_sidecar/" in docs and "https://" not in docs
    assert client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200
