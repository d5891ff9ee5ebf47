"""Request → review → release → the owner downloads the very bytes; everyone else is refused;
rejection deletes; every step is audited and mailed. On the local export root and on S3."""

from __future__ import annotations

import io
import time
import zipfile

import requests
from django.conf import settings
from django.urls import reverse

from accounts.people import person
from exports.models import Export, ExportEvent, ExportFile
from tests.helpers import mail_text, sign_in_with_second_factor

from .conftest import seen_on_page, sha256, stored_keys

A = ExportEvent.Action
MODEL = bytes(range(256)) * 300
REPORT = b"auc,0.91\n"
SCRATCH = b"intermediate activations of patient images\n"


def fetch(client, url: str) -> bytes:
    """Follow a download link the way a browser does: the portal, then (S3) the presigned URL."""
    response = client.get(url)
    if response.status_code == 302 and response.url.startswith("http"):
        # A presigned URL that lives no longer than the portal's own link.
        assert f"X-Amz-Expires={settings.M2D_EXPORT_LINK_SECONDS}&" in response.url
        remote = requests.get(response.url, timeout=10)
        assert remote.status_code == 200, remote.text[:300]
        return remote.content
    assert response.status_code == 200, response.content[:500]
    return b"".join(response.streaming_content)


def panel_links(client, submission_id: int) -> dict[str, str]:
    """The download links the owner's submission page offers, by what they download."""
    import re

    page = client.get(reverse("submissions:detail", args=[submission_id])).content.decode()
    links = {}
    for match in re.finditer(r'<code>([^<]+)</code>(?:(?!</tr>).)*?href="(/exports/download/[^"]+)"', page, re.S):
        links[match.group(1)] = match.group(2)
    zip_link = re.search(r'href="(/exports/download/[^"]+)" id="download-all"', page)
    if zip_link:
        links["*zip*"] = zip_link.group(1)
    return links


def test_request_review_release_download(settings, export_storage, users, finished_submission, client, mailbox):
    owner, other, admin = users["owner"], users["other"], users["admin1"]
    submission = finished_submission(owner, {"model.pt.bin": MODEL, "report.csv": REPORT, "scratch.txt": SCRATCH})
    export = submission.export
    if export_storage == "s3":
        # The files live in the bucket now, not on the host, and the bucket refuses anonymous reads.
        assert not (settings.M2D_EXPORT_ROOT / str(submission.pk)).exists()
        anonymous = requests.get(
            f"{settings.S3_TEST_ENDPOINT}/{settings.S3_TEST_BUCKET}/exports/{submission.pk}/report.csv"
        )
        assert anonymous.status_code == 403

    # The researcher asks, with a justification; the admins are told.
    client.force_login(owner)
    response = client.post(reverse("exports:request", args=[submission.pk]), {"justification": "short"}, follow=True)
    assert "at least 10 characters" in response.content.decode()
    export.refresh_from_db()
    assert export.status == Export.Status.HELD
    client.post(reverse("exports:request", args=[submission.pk]), {"justification": "Weights for the paper."})
    export.refresh_from_db()
    assert export.status == Export.Status.REQUESTED and export.justification == "Weights for the paper."
    admin_mail = mailbox.wait_for(admin.email, 1)
    assert admin_mail[0]["Subject"] == f"[M2D] Submission {submission.pk}: export waiting for review"
    assert "Weights for the paper." in mail_text(admin_mail[0])
    assert mail_text(admin_mail[0]).startswith(f"Hello {person(admin)},")  # each admin their own mail
    assert admin_mail[0]["To"] == admin.email
    assert reverse("exports:review", args=[export.pk]) in mail_text(admin_mail[0])

    # Nothing is downloadable yet: no links, and a link cannot even be made.
    assert panel_links(client, submission.pk) == {}

    # A researcher cannot reach the review page; the admin decides per file with a comment.
    assert client.get(reverse("exports:review", args=[export.pk])).status_code == 404
    sign_in_with_second_factor(client, admin)
    files = {f.path: f for f in export.entries.all()}
    seen = seen_on_page(client, export)
    response = client.post(
        reverse("exports:review", args=[export.pk]),
        {**seen, f"decision-{files['scratch.txt'].pk}": "reject", "action": "decide", "comment": ""},
    )
    assert "Say why you reject" in response.content.decode()
    assert ExportFile.objects.get(pk=files["scratch.txt"].pk).state == "held"
    client.post(
        reverse("exports:review", args=[export.pk]),
        {
            **seen,
            f"decision-{files['model.pt.bin'].pk}": "release",
            f"decision-{files['report.csv'].pk}": "release",
            f"decision-{files['scratch.txt'].pk}": "reject",
            "action": "decide",
            "comment": "Activations could show patient images.",
        },
    )
    export.refresh_from_db()
    assert export.status == Export.Status.REVIEWED
    assert {f.path: f.state for f in export.entries.all()} == {
        "model.pt.bin": "released",
        "report.csv": "released",
        "scratch.txt": "rejected",
    }
    # The rejected file is gone from storage; the released ones stay.
    keys = stored_keys(settings)
    assert f"{submission.pk}/scratch.txt" not in keys
    assert {f"{submission.pk}/model.pt.bin", f"{submission.pk}/report.csv"} <= set(keys)
    decision_mail = mailbox.wait_for(owner.email, 2)[-1]
    assert decision_mail["Subject"] == f"[M2D] Submission {submission.pk}: files released"
    body = mail_text(decision_mail)
    assert "model.pt.bin" in body and "Activations could show patient images." in body
    # A rejected file's name was never released: the owner learns how many, not which.
    assert "scratch.txt" not in body and "1 file rejected and deleted." in body

    # The owner downloads the very bytes, one file and the whole release.
    client.force_login(owner)
    links = panel_links(client, submission.pk)
    assert set(links) == {"model.pt.bin", "report.csv", "*zip*"}
    page = client.get(reverse("submissions:detail", args=[submission.pk])).content.decode()
    assert "Ask for release" not in page  # decided: nothing is left to ask for
    assert sha256(fetch(client, links["model.pt.bin"])) == sha256(MODEL)
    with zipfile.ZipFile(io.BytesIO(fetch(client, links["*zip*"]))) as archive:
        assert sorted(archive.namelist()) == ["model.pt.bin", "report.csv"]
        assert sha256(archive.read("model.pt.bin")) == sha256(MODEL)
        assert archive.read("report.csv") == REPORT

    # Another researcher, an anonymous visitor and an admin get nothing from the same link.
    for intruder in (other, admin):
        client.force_login(intruder)
        response = client.get(links["model.pt.bin"])
        assert response.status_code == 403 and MODEL[:64] not in response.content
        assert "Only the owner" in response.content.decode()
    client.logout()
    response = client.get(links["model.pt.bin"])
    assert response.status_code == 302 and "/accounts/login/" in response.url

    # Links expire.
    settings.M2D_EXPORT_LINK_SECONDS = 1
    time.sleep(2.1)
    client.force_login(owner)
    response = client.get(links["report.csv"])
    assert response.status_code == 410 and "expired" in response.content.decode()

    # Every step is on the record, with who did it.
    trail = [(e.action, e.by.username if e.by else None, e.path) for e in submission.export_events.all()]
    assert trail == [
        (A.COLLECTED, None, ""),
        (A.REQUESTED, owner.username, ""),
        (A.RELEASED, admin.username, "model.pt.bin"),
        (A.RELEASED, admin.username, "report.csv"),
        (A.REJECTED, admin.username, "scratch.txt"),
        (A.DOWNLOADED, owner.username, "model.pt.bin"),
        (A.DOWNLOADED, owner.username, ""),
    ]
    # Downloads are on the trail, not in the owner's mailbox.
    subjects = [m["Subject"] for m in mailbox.wait_for(owner.email, 3, timeout=3)]
    assert subjects and not [s for s in subjects if s.endswith("files downloaded")], subjects


def test_cancel_and_whole_rejection(settings, export_storage, users, finished_submission, client, mailbox):
    owner, admin = users["owner"], users["admin1"]
    submission = finished_submission(owner, {"a.txt": b"a\n", "b/c.npy": b"\x93NUMPY-not-really"})
    export = submission.export
    client.force_login(owner)
    client.post(reverse("exports:request", args=[submission.pk]), {"justification": "Need both for the appendix."})
    client.post(reverse("exports:cancel", args=[submission.pk]))
    export.refresh_from_db()
    assert export.status == Export.Status.HELD
    # A cancelled request cannot be reviewed.
    sign_in_with_second_factor(client, admin)
    response = client.post(
        reverse("exports:review", args=[export.pk]), {"action": "release_all", "comment": ""}, follow=True
    )
    assert "is not waiting for review" in response.content.decode()
    assert not export.entries.filter(state="released").exists()

    client.force_login(owner)
    client.post(reverse("exports:request", args=[submission.pk]), {"justification": "Asking again, for real now."})
    sign_in_with_second_factor(client, admin)
    client.post(
        reverse("exports:review", args=[export.pk]),
        {**seen_on_page(client, export), "action": "reject_all", "comment": "Raw arrays."},
    )
    export.refresh_from_db()
    assert export.status == Export.Status.REVIEWED
    assert set(export.entries.values_list("state", flat=True)) == {"rejected"}
    assert [k for k in stored_keys(settings) if k.startswith(f"{submission.pk}/")] == []
    actions = list(submission.export_events.values_list("action", flat=True))
    assert actions == [A.COLLECTED, A.REQUESTED, A.CANCELLED, A.REQUESTED, A.REJECTED, A.REJECTED]
    subjects = [m["Subject"] for m in mailbox.wait_for(owner.email, 4)]
    assert f"[M2D] Submission {submission.pk}: release request cancelled" in subjects
    assert f"[M2D] Submission {submission.pk}: files rejected" in subjects
