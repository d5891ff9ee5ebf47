"""With 1,000 submissions the list and detail pages, their API twins and the admin dashboard issue as many database
queries as with a handful: nothing is fetched row by row."""

import random
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from submissions.models import Submission, SubmissionEvent
from tests.helpers import sign_in_with_second_factor

pytestmark = pytest.mark.services

STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"]


def add_submissions(owner, count: int) -> Submission:
    rng = random.Random(count)
    now = timezone.now()
    rows = Submission.objects.bulk_create(
        Submission(
            owner=owner,
            status=rng.choice(STATUSES),
            archive="submissions/none.zip",
            archive_sha256="0" * 64,
            original_name=f"run-{i}.zip",
            metrics={"loss": rng.random(), "auc": rng.random()},
        )
        for i in range(count)
    )
    events = []
    for row in rows:
        events.append(SubmissionEvent(submission=row, from_status="", to_status="received"))
        if row.status != "queued":
            events.append(SubmissionEvent(submission=row, from_status="queued", to_status="running"))
        if row.status not in ("queued", "running"):
            events.append(SubmissionEvent(submission=row, from_status="running", to_status=row.status))
    SubmissionEvent.objects.bulk_create(events)
    ids = [row.pk for row in rows]
    SubmissionEvent.objects.filter(submission_id__in=ids, to_status="running").update(at=now)
    SubmissionEvent.objects.filter(submission_id__in=ids, to_status__in=["succeeded", "failed", "cancelled"]).update(
        at=now + timedelta(minutes=3)
    )
    Submission.objects.filter(pk__in=ids).exclude(status="queued").update(started_at=now)
    Submission.objects.filter(pk__in=ids, status__in=["succeeded", "failed", "cancelled"]).update(
        finished_at=now + timedelta(minutes=3)
    )
    return rows[-1]


def queries(fn) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = fn()
    assert response.status_code == 200
    return len(captured)


def test_pages_and_api_stay_flat_with_many_submissions(make_researcher, client, api_for):
    researcher = make_researcher()
    client.force_login(researcher.user)
    api = api_for(researcher.user)
    staff = Client()
    admin = get_user_model().objects.create_user("count-admin", "count@example.org", "pw", is_staff=True)
    sign_in_with_second_factor(staff, admin)
    few = add_submissions(researcher.user, 5)
    calls = {
        "list page": lambda: client.get("/submissions/"),
        "detail page": lambda: client.get(f"/submissions/{few.pk}/"),
        "live part": lambda: client.get(f"/submissions/{few.pk}/live/"),
        "API list": lambda: api.get("/api/v1/submissions/"),
        "API detail": lambda: api.get(f"/api/v1/submissions/{few.pk}/"),
        "admin dashboard": lambda: staff.get("/submissions/dashboard/"),
    }
    for call in calls.values():  # the first view of a finished one keeps its metric history: once
        call()
    before = {name: queries(call) for name, call in calls.items()}
    add_submissions(researcher.user, 1000)
    after = {name: queries(call) for name, call in calls.items()}
    assert after == before
    assert max(after.values()) <= 20, after
    page = client.get("/submissions/").content.decode()
    assert page.count("<tr>") == 51  # the newest 50 and the header, with a way to the others
    assert "1–50 of 1005 · page 1 of 21" in page and 'href="?page=2" rel="next"' in page
    last = client.get("/submissions/?page=21").content.decode()
    assert last.count("<tr>") == 6 and "1001–1005 of 1005" in last and 'rel="next"' not in last
    assert client.get("/submissions/?page=nonsense").status_code == 200  # the first page
    # How long each took: finished ones ran 3 minutes here.
    assert "(run 3 min)" in page or "(run 3 min)" in client.get("/submissions/?page=2").content.decode()
    # Waiting ones say where they stand, estimated from the recent runs (3 minutes each here).
    oldest_waiting = Submission.objects.filter(owner=researcher.user, status="queued").order_by("created_at").first()
    assert api.get(f"/api/v1/submissions/{oldest_waiting.pk}/").json()["estimated_wait_seconds"] == 180
    assert " in queue, starts in about " in page
