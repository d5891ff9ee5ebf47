"""Nothing a run wrote is served to anyone before release, whatever the URL."""

from __future__ import annotations

from django.core import signing
from django.urls import reverse

from exports.services import DOWNLOAD_SALT, ExportRefused, download_token

SECRET = b"PATIENT-P1-SECRET-ROW;S1-A1;malignant\n"


def test_no_url_serves_an_unreleased_file(settings, export_storage, users, finished_submission, client):
    owner = users["owner"]
    submission = finished_submission(owner, {"secret.csv": SECRET, "dir/also.txt": SECRET})
    export = submission.export
    held = export.entries.get(path="secret.csv")

    # The portal will not make a link for an unreleased file ...
    try:
        download_token(user=owner, export=export, file=held)
        raise AssertionError("a link was made for an unreleased file")
    except ExportRefused:
        pass
    # ... and a link forged with the platform's own key is checked against the release again.
    signer = signing.TimestampSigner(salt=DOWNLOAD_SALT)
    forged = [
        signer.sign_object({"u": owner.pk, "e": export.pk, "f": held.pk}),
        signer.sign_object({"u": owner.pk, "e": export.pk, "f": 0}),
        signing.TimestampSigner(key="guessed", salt=DOWNLOAD_SALT).sign_object(
            {"u": owner.pk, "e": export.pk, "f": held.pk}
        ),
    ]
    sid = submission.pk
    root = settings.M2D_EXPORT_ROOT
    urls = [reverse("exports:download", args=[token]) for token in forged] + [
        f"/exports/{sid}/secret.csv",
        f"/exports/download/{sid}/secret.csv",
        f"/exports/download/..%2F{sid}%2Fsecret.csv/",
        f"/exports/submissions/{sid}/secret.csv",
        f"/exports/submissions/{sid}/logs/../../{sid}/secret.csv",
        f"/exports/files/{held.pk}/",
        f"/exports/files/{held.pk}/download/",
        f"/exports/review/{export.pk}/",
        f"/exports/review/{export.pk}/files/{held.pk}/",
        f"/submissions/{sid}/secret.csv",
        f"/media/{sid}/secret.csv",
        f"/static/{sid}/secret.csv",
        f"/var/exports/{sid}/secret.csv",
        f"/{root}/{sid}/secret.csv",
        f"/exports/submissions/{sid}/provenance.json",
        f"/submissions/{sid}/",
        f"/admin/exports/exportfile/{held.pk}/change/",
    ]
    for who in (None, owner, users["other"]):
        client.logout()
        if who is not None:
            client.force_login(who)
        for url in urls:
            response = client.get(url)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            assert SECRET not in body and b"PATIENT-P1" not in body, (who, url, response.status_code)
            assert not (response.status_code == 302 and response.url.startswith("http")), (who, url)
