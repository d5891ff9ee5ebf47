"""A run on another host than the portal's: its full log reaches the portal only through the export
storage, and goes out only as it would from the portal's own host: an admin reads it, the
researcher asks for it and gets it once it is released."""

from __future__ import annotations

import re
import shutil

from django.urls import reverse

from exports import hostlogs
from exports.models import ExportEvent
from submissions.logpolicy import log_dir
from tests.helpers import sign_in_with_second_factor

from .conftest import seen_on_page
from .test_release_flow import fetch

LOG = "".join(f"epoch {i:04d} loss 0.{i:04d}\n" for i in range(3000))


def test_a_full_log_kept_by_the_run_host_is_read_asked_for_and_released(
    export_storage, users, finished_submission, client, settings
):
    settings.M2D_EXPORT_TWO_PERSON_RULE = False
    settings.M2D_LOG_TAIL_LINES = 5
    owner = users["owner"]
    submission = finished_submission(owner, {"report.txt": b"r\n"}, run_log_tail=LOG[-200:])
    # The run host writes the log to its own disk and keeps a copy in the shared storage ...
    folder = log_dir(submission.pk)
    folder.mkdir(parents=True)
    (folder / "run.log").write_text(LOG)
    hostlogs.keep(submission.pk, "run")
    # ... and the portal, on another machine, has only that copy.
    shutil.rmtree(folder)

    client.force_login(owner)
    page = client.get(reverse("submissions:detail", args=[submission.pk])).content.decode()
    assert "epoch 0000" not in page  # the page shows no more than the tail
    assert 'name="log-run"' in page  # but the full log can be asked for
    assert 'name="log-build"' not in page  # no host kept a build log
    assert client.get(reverse("exports:full_log", args=[submission.pk, "run"])).status_code == 404

    admin = users["admin1"]
    sign_in_with_second_factor(client, admin)
    response = client.get(reverse("exports:full_log", args=[submission.pk, "run"]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content).decode() == LOG
    assert submission.export_events.filter(action=ExportEvent.Action.LOG_READ, by=admin).exists()

    client.force_login(owner)
    client.post(
        reverse("exports:request", args=[submission.pk]),
        {"justification": "The whole training log, to compare the epochs.", "log-run": "1"},
    )
    log_file = submission.export.entries.get(source="log")
    assert (log_file.display_path, log_file.size, log_file.state) == ("platform-logs/run.log", len(LOG), "held")
    page = client.get(reverse("submissions:detail", args=[submission.pk])).content.decode()
    assert "/exports/download/" not in page  # nothing before the review

    sign_in_with_second_factor(client, admin)
    client.post(
        reverse("exports:review", args=[submission.export.pk]),
        {
            **seen_on_page(client, submission.export),
            f"decision-{log_file.pk}": "release",
            "action": "decide",
            "comment": "training losses only",
        },
    )
    client.force_login(owner)
    page = client.get(reverse("submissions:detail", args=[submission.pk])).content.decode()
    link = re.search(r'<code>platform-logs/run.log</code>(?:(?!</tr>).)*?href="(/exports/download/[^"]+)"', page, re.S)
    assert fetch(client, link.group(1)).decode() == LOG
