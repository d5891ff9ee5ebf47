"""A decision applies to the files the reviewer was shown, never to files that changed while the
page was open; and a reviewer can read any held file whole, not only its preview."""

from __future__ import annotations

import re

from django.test import Client
from django.urls import reverse

from exports.fileview import PAGE_BYTES
from exports.models import ExportEvent, ExportFile
from exports.services import export_cancel_request, export_request_release
from runner.naming import log_dir
from tests.helpers import sign_in_with_second_factor

from .conftest import seen_on_page

A = ExportEvent.Action
CHANGED = "The files waiting for review changed since you opened this page"


def decisions_of(export) -> list[str]:
    return list(
        export.submission.export_events.filter(action__in=ExportEvent.DECISIONS).values_list("action", flat=True)
    )


def test_release_all_refuses_a_log_attached_after_the_page_was_opened(
    export_storage, users, finished_submission, client
):
    owner, admin = users["owner"], users["admin1"]
    submission = finished_submission(owner, {"weights.bin": b"\x01" * 64})
    (log_dir(submission.pk)).mkdir(parents=True, exist_ok=True)
    (log_dir(submission.pk) / "run.log").write_text("row of patient P1\n")
    export = export_request_release(by=owner, submission=submission, justification="Weights for the paper.")

    sign_in_with_second_factor(client, admin)
    seen = seen_on_page(client, export)  # the reviewer opens the page: one file

    # Meanwhile the researcher asks again, with the full run log attached.
    export_cancel_request(by=owner, export=export)
    export_request_release(by=owner, submission=submission, justification="Weights and the log.", logs=("run",))

    response = client.post(reverse("exports:review", args=[export.pk]), {**seen, "action": "release_all"})
    page = response.content.decode()
    assert response.status_code == 400
    assert f"{CHANGED} (platform-logs/run.log was added); reload and review them again." in page
    assert set(export.entries.values_list("state", flat=True)) == {ExportFile.State.HELD}
    assert decisions_of(export) == []

    # The page the reviewer sees now shows the log; releasing what it shows works.
    fresh = seen_on_page(client, export)
    assert len(fresh) == 2
    response = client.post(reverse("exports:review", args=[export.pk]), {**fresh, "action": "release_all"}, follow=True)
    assert "Done: 2 released." in response.content.decode()
    assert set(export.entries.values_list("state", flat=True)) == {ExportFile.State.RELEASED}


def test_a_file_decided_meanwhile_or_not_shown_is_refused(export_storage, users, finished_submission):
    owner, admin1, admin2 = users["owner"], users["admin1"], users["admin2"]
    submission = finished_submission(owner, {"a.txt": b"a\n", "b.txt": b"b\n"})
    export = export_request_release(by=owner, submission=submission, justification="Both, for the appendix.")
    files = {f.path: f for f in export.entries.all()}
    first, second = Client(), Client()
    sign_in_with_second_factor(first, admin1)
    sign_in_with_second_factor(second, admin2)
    seen = seen_on_page(first, export)

    # A second admin rejects a.txt while the first still has the page open.
    second.post(
        reverse("exports:review", args=[export.pk]),
        {
            **seen_on_page(second, export),
            f"decision-{files['a.txt'].pk}": "reject",
            "action": "decide",
            "comment": "no",
        },
    )
    response = first.post(
        reverse("exports:review", args=[export.pk]),
        {**seen, f"decision-{files['a.txt'].pk}": "release", f"decision-{files['b.txt'].pk}": "release"},
    )
    assert f"{CHANGED} (a.txt is no longer waiting); reload" in response.content.decode()
    assert ExportFile.objects.get(pk=files["b.txt"].pk).state == ExportFile.State.HELD

    # A file whose bytes are not the ones the page showed is refused too.
    forged = {f"seen-{files['b.txt'].pk}": "0" * 64, f"decision-{files['b.txt'].pk}": "release"}
    response = first.post(reverse("exports:review", args=[export.pk]), {**forged, "action": "decide"})
    assert f"{CHANGED} (b.txt is not the file you were shown)" in response.content.decode()
    assert decisions_of(export) == [A.REJECTED]

    response = first.post(
        reverse("exports:review", args=[export.pk]),
        {**seen_on_page(first, export), f"decision-{files['b.txt'].pk}": "release", "action": "decide"},
        follow=True,
    )
    assert "Done: 1 released." in response.content.decode()
    assert decisions_of(export) == [A.REJECTED, A.RELEASED]


def test_a_held_file_reads_whole_page_by_page(export_storage, users, finished_submission, client):
    owner, admin = users["owner"], users["admin1"]
    lines = [f"row {i:05d} patient-like value {i * 7}" for i in range(3000)]  # ~110 KiB, two pages
    text = ("\n".join(lines) + "\n").encode()
    binary = bytes(range(256)) * 4 + b"END-OF-BLOB"
    submission = finished_submission(owner, {"table.txt": text, "blob.bin": binary})
    export = export_request_release(by=owner, submission=submission, justification="A table and a blob.")
    files = {f.path: f for f in export.entries.all()}
    sign_in_with_second_factor(client, admin)

    review = client.get(reverse("exports:review", args=[export.pk])).content.decode()
    whole = reverse("exports:file_whole", args=[export.pk, files["table.txt"].pk])
    assert f'href="{whole}"' in review and lines[100] not in review  # the preview stops at 20 lines

    first = client.get(whole).content.decode()
    assert lines[0] in first and lines[100] in first and lines[-1] not in first
    assert f"page 1 of 2: bytes 0–{PAGE_BYTES} of {len(text)}" in first
    next_page = re.search(r'href="(\?page=2)"', first).group(1)
    second = client.get(whole + next_page).content.decode()
    assert lines[-1] in second and lines[0] not in second and 'href="?page=1"' in second

    dump = client.get(reverse("exports:file_whole", args=[export.pk, files["blob.bin"].pk])).content.decode()
    assert "as a hex dump" in dump
    assert "00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  ................" in dump
    assert "00000400  45 4e 44 2d 4f 46 2d 42  4c 4f 42" in dump and "END-OF-BLOB" in dump

    # The researcher, and an admin who owns the submission, cannot read held files this way.
    client.force_login(owner)
    assert client.get(whole).status_code == 404
    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    sign_in_with_second_factor(client, owner)
    response = client.get(whole)
    assert response.status_code == 403 and lines[0] not in response.content.decode()


def test_reading_a_full_log_whole_is_on_the_record(export_storage, users, finished_submission, client):
    owner, admin = users["owner"], users["admin1"]
    submission = finished_submission(owner, {"report.txt": b"r\n"})
    log_dir(submission.pk).mkdir(parents=True, exist_ok=True)
    (log_dir(submission.pk) / "run.log").write_text("epoch 1 loss 0.5\n" * 10000)
    export = export_request_release(by=owner, submission=submission, justification="The log, please.", logs=("run",))
    log_file = export.entries.get(source=ExportFile.Source.LOG)
    sign_in_with_second_factor(client, admin)
    page = client.get(reverse("exports:file_whole", args=[export.pk, log_file.pk]) + "?page=2").content.decode()
    assert "page 2 of 3" in page and "epoch 1 loss 0.5" in page
    read = export.submission.export_events.get(action=A.LOG_READ)
    assert read.by == admin and read.path == "platform-logs/run.log"
    assert read.comment == f"bytes {PAGE_BYTES:,}–{2 * PAGE_BYTES:,} of {log_file.size:,}"
