"""Nothing a run wrote is served to anyone before release, whatever the URL.

Every probe names the route it must reach: a probe that stops matching a route, or starts matching
another one, fails here rather than passing on a 404 that proves nothing."""

from __future__ import annotations

import io
import zipfile
from urllib.parse import unquote, urlsplit

import pytest
from django.core import signing
from django.core.files.base import ContentFile
from django.urls import Resolver404, resolve, reverse

from exports import storage
from exports.downloads import DOWNLOAD_SALT, download_token
from exports.errors import ExportRefused
from submissions.logpolicy import log_dir

SECRET = b"PATIENT-P1-SECRET-ROW;S1-A1;malignant\n"
LOG_SECRET = b"PATIENT-P1-LOG-LINE: S1-A1 is malignant\n"


def _path_info(url: str) -> str:
    """What the URL resolver sees of a URL: its path, percent-decoded (as the server hands it over)."""
    return unquote(urlsplit(url).path)


def _zip_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # stored: the bytes show as they are
        archive.writestr(name, data)
    return buffer.getvalue()


def test_no_url_serves_an_unreleased_file(settings, export_storage, users, finished_submission, client):
    owner = users["owner"]
    submission = finished_submission(owner, {"secret.csv": SECRET, "dir/also.txt": SECRET})
    export = submission.export
    held = export.entries.get(path="secret.csv")
    also = export.entries.get(path="dir/also.txt")
    sid = submission.pk
    # The whole run log (never shown to its researcher) and a release zip left in export storage.
    log_dir(sid).mkdir(parents=True, exist_ok=True)
    (log_dir(sid) / "run.log").write_bytes(LOG_SECRET * 20)
    storage.export_storage().save(f"_releases/{sid}/{'0' * 32}.zip", ContentFile(_zip_of("secret.csv", SECRET)))

    # The portal will not make a link for an unreleased file ...
    with pytest.raises(ExportRefused):
        download_token(user=owner, export=export, file=held)
    # ... and a link forged with the platform's own key is checked against the release again.
    signer = signing.TimestampSigner(salt=DOWNLOAD_SALT)
    tokens = [
        signer.sign_object({"u": owner.pk, "e": export.pk, "f": held.pk}),
        signer.sign_object({"u": owner.pk, "e": export.pk, "f": 0}),  # the whole release as a zip
        signer.sign_object({"u": users["other"].pk, "e": export.pk, "f": held.pk}),
        signing.TimestampSigner(key="guessed", salt=DOWNLOAD_SALT).sign_object(
            {"u": owner.pk, "e": export.pk, "f": held.pk}
        ),
        # Storage keys and traversal spellings where a token goes (one path segment each).
        "%2e%2e",
        "secret.csv",
        f"{sid}%5Csecret.csv",
        f"..%5C..%5C{sid}%5Csecret.csv",
        f"_releases%5C{sid}%5C{'0' * 32}.zip",
    ]
    probes = [
        *[("get", reverse("exports:download", args=["TOKEN"]).replace("TOKEN", t), "exports:download") for t in tokens],
        *[("get", reverse("api:download", args=["TOKEN"]).replace("TOKEN", t), "api:download") for t in tokens],
        # Full logs are for admins; traversal spellings where the log's kind goes.
        *[
            ("get", f"/exports/submissions/{sid}/logs/{kind}/", "exports:full_log")
            for kind in ("run", "build", "run.log", "%2e%2e", f"..%5C..%5Cexports%5C{sid}%5Csecret.csv")
        ],
        # The review pages show whole files, to admins only.
        ("get", reverse("exports:review_queue"), "exports:review_queue"),
        ("get", reverse("exports:review", args=[export.pk]), "exports:review"),
        ("get", reverse("exports:file_whole", args=[export.pk, held.pk]), "exports:file_whole"),
        ("get", reverse("exports:file_whole", args=[export.pk, also.pk]) + "?page=1", "exports:file_whole"),
        ("post", reverse("exports:add_log", args=[export.pk]), "exports:add_log"),
        # What researchers see of their own submission: names, sizes and states, never contents.
        ("get", reverse("exports:provenance", args=[sid]), "exports:provenance"),
        ("get", reverse("modelstore:register") + f"?submission={sid}", "modelstore:register"),
        ("post", reverse("modelstore:register"), "modelstore:register"),
        ("get", reverse("modelstore:list"), "modelstore:list"),
        ("get", reverse("submissions:list"), "submissions:list"),
        ("get", reverse("submissions:detail", args=[sid]), "submissions:detail"),
        ("get", reverse("submissions:live", args=[sid]), "submissions:live"),
        ("get", reverse("api:submission-detail", args=[sid]), "api:submission-detail"),
        ("get", reverse("api:submission-exports", args=[sid]), "api:submission-exports"),
        ("get", reverse("api:submission-logs", args=[sid]), "api:submission-logs"),
        # The admin site's read-only pages of the airlock.
        ("get", reverse("admin:exports_export_change", args=[export.pk]), "admin:exports_export_change"),
        ("get", reverse("admin:exports_exportevent_changelist"), "admin:exports_exportevent_changelist"),
    ]
    for _, url, view_name in probes:
        assert resolve(_path_info(url)).view_name == view_name, url
    # No route at all serves the folders where runs' files, logs and uploads are kept.
    root = str(settings.M2D_EXPORT_ROOT).strip("/")
    for url in (
        f"/media/{sid}/secret.csv",
        f"/media/submissions/{sid}/secret.csv",
        f"/{root}/{sid}/secret.csv",
        f"/var/exports/{sid}/secret.csv",
        f"/var/logs/{sid}/run.log",
        f"/exports/{sid}/secret.csv",
        f"/exports/_releases/{sid}/{'0' * 32}.zip",
    ):
        with pytest.raises(Resolver404):
            resolve(_path_info(url))

    for who in (None, owner, users["other"]):
        client.logout()
        if who is not None:
            client.force_login(who)
        for method, url, _ in probes:
            response = getattr(client, method)(url)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            assert SECRET not in body and b"PATIENT-P1" not in body, (who, url, response.status_code)
            assert not (response.status_code == 302 and response.url.startswith("http")), (who, url)


def test_static_files_never_reach_an_export(settings, export_storage, users, finished_submission, client):
    """Static files are served by the web process before any route is looked at: it serves what it
    should, and no spelling of a path under it reaches an export."""
    submission = finished_submission(users["owner"], {"secret.csv": SECRET})
    sid = submission.pk
    static = "/" + settings.STATIC_URL.strip("/")
    control = client.get(f"{static}/admin/css/base.css")
    assert control.status_code == 200 and b"".join(control.streaming_content).strip(), "static files are served"
    root = str(settings.M2D_EXPORT_ROOT).strip("/")
    for url in (
        f"{static}/{sid}/secret.csv",
        f"{static}/../exports/{sid}/secret.csv",
        f"{static}/%2e%2e/%2e%2e/exports/{sid}/secret.csv",
        f"{static}/..%2f..%2f{root}%2f{sid}%2fsecret.csv",
        f"{static}//{root}/{sid}/secret.csv",
        f"{static}/..%5c..%5c{root}%5c{sid}%5csecret.csv",
    ):
        for who in (None, users["owner"]):
            client.logout()
            if who is not None:
                client.force_login(who)
            response = client.get(url)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            assert SECRET not in body, (who, url, response.status_code)
