"""The two-person rule, and retention: a warning mail, then deletion, for exports nobody asked for."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from exports.models import Export, ExportEvent
from exports.services import ExportRefused, export_decide_all, export_request_release
from tests.helpers import mail_text, sign_in_with_second_factor

from .conftest import seen_on_page, stored_keys

A = ExportEvent.Action


def test_two_person_rule(settings, export_storage, users, finished_submission, client, mailbox):
    settings.M2D_EXPORT_TWO_PERSON_RULE = True
    owner, admin1, admin2 = users["owner"], users["admin1"], users["admin2"]
    submission = finished_submission(owner, {"weights.bin": b"\x01\x02" * 100})
    export = submission.export
    export_request_release(by=owner, submission=submission, justification="Model for the validation study.")

    sign_in_with_second_factor(client, admin1)
    page = client.get(reverse("exports:review", args=[export.pk])).content.decode()
    assert "each release needs two different admins" in page
    seen = seen_on_page(client, export)
    client.post(
        reverse("exports:review", args=[export.pk]), {**seen, "action": "release_all", "comment": "Looks fine."}
    )
    file = export.entries.get()
    assert file.state == "held"  # one approval is not a release
    assert "approved by " + admin1.username in client.get(reverse("exports:review", args=[export.pk])).content.decode()
    second = mailbox.wait_for(admin2.email, 2)
    assert second[-1]["Subject"] == f"[M2D] Submission {submission.pk}: a second admin must approve the release"
    assert admin1.email not in second[-1]["To"]

    # The same admin twice does not make two.
    response = client.post(
        reverse("exports:review", args=[export.pk]), {**seen, "action": "release_all", "comment": ""}
    )
    assert "a second, different admin must approve it" in response.content.decode()
    file.refresh_from_db()
    assert file.state == "held"

    # An admin who owns the submission cannot be one of the two.
    get_user_model().objects.filter(pk=owner.pk).update(is_staff=True)
    owner.refresh_from_db()
    with pytest.raises(ExportRefused, match="your own submission"):
        export_decide_all(by=owner, export=export, decision="release", seen={file.pk: file.sha256})

    sign_in_with_second_factor(client, admin2)
    client.post(
        reverse("exports:review", args=[export.pk]),
        {**seen_on_page(client, export), "action": "release_all", "comment": "Agreed."},
    )
    file.refresh_from_db()
    export.refresh_from_db()
    assert file.state == "released" and export.status == Export.Status.REVIEWED
    decisions = [(e.action, e.by_id) for e in submission.export_events.filter(action__in=ExportEvent.DECISIONS)]
    assert decisions == [(A.APPROVED, admin1.pk), (A.APPROVED, admin2.pk), (A.RELEASED, admin2.pk)]


def test_unrequested_exports_are_warned_then_deleted(settings, export_storage, users, finished_submission, mailbox):
    from exports.tasks import expire_exports

    settings.M2D_EXPORT_RETENTION_DAYS = 10
    settings.M2D_EXPORT_EXPIRY_WARNING_DAYS = 3
    owner = users["owner"]
    kept = finished_submission(owner, {"kept.txt": b"requested in time\n"})
    lapsing = finished_submission(owner, {"lapsing.txt": b"nobody asked\n", "img/x.png": b"\x89PNG fake"})
    export_request_release(by=owner, submission=kept, justification="I do need this one.")

    now = timezone.now()
    assert expire_exports() == {"warned": 0, "expired": 0}
    Export.objects.filter(pk__in=[kept.export.pk, lapsing.export.pk]).update(expires_at=now + timedelta(days=2))
    assert expire_exports() == {"warned": 1, "expired": 0}
    assert expire_exports() == {"warned": 0, "expired": 0}  # warned once only
    warning = mailbox.wait_for(owner.email, 2)[-1]
    assert warning["Subject"] == f"[M2D] Submission {lapsing.pk}: exported files expire soon"
    assert "ask for their release on the submission page" in mail_text(warning)

    Export.objects.filter(pk__in=[kept.export.pk, lapsing.export.pk]).update(expires_at=now - timedelta(minutes=1))
    assert expire_exports() == {"warned": 0, "expired": 1}
    lapsing.export.refresh_from_db()
    assert lapsing.export.status == Export.Status.EXPIRED
    assert set(lapsing.export.entries.values_list("state", flat=True)) == {"expired"}
    keys = stored_keys(settings)
    assert not [k for k in keys if k.startswith(f"{lapsing.pk}/")]
    assert f"{kept.pk}/kept.txt" in keys  # a requested export never expires
    assert list(lapsing.export_events.values_list("action", flat=True)) == [A.COLLECTED, A.EXPIRY_WARNED, A.EXPIRED]
    deleted = mailbox.wait_for(owner.email, 3)[-1]
    assert deleted["Subject"] == f"[M2D] Submission {lapsing.pk}: exported files deleted"
    with pytest.raises(ExportRefused, match="expired"):
        export_request_release(by=owner, submission=lapsing, justification="Too late, but let me try.")


def test_the_sweep_is_scheduled_and_runs_on_a_real_worker(settings, users, finished_submission, celery_workers):
    """Beat sends the sweep to the ops queue; a real worker (on the test database) deletes."""
    from m2d.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["expire-exports"]
    assert entry["task"] == "exports.tasks.expire_exports" and entry["options"]["queue"] == settings.M2D_QUEUE_OPS
    submission = finished_submission(users["owner"], {"old.txt": b"old\n"})
    Export.objects.filter(pk=submission.export.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    app.send_task(entry["task"], queue=entry["options"]["queue"])
    export = submission.export
    for _ in range(100):
        export.refresh_from_db()
        if export.status == Export.Status.EXPIRED:
            break
        time.sleep(0.2)
    assert export.status == Export.Status.EXPIRED
    assert not (settings.M2D_EXPORT_ROOT / str(submission.pk) / "old.txt").exists()
