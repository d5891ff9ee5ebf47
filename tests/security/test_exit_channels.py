"""Every way a hostile run could get data set bytes to its researcher without review, tried for
real: each test measures what the researcher can read of the run through every door (the page,
its live part, the API, the provenance record, the e-mails) and holds it to the channel's budget."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from submissions.models import Submission
from tests.conftest import WorkerPool
from tests.helpers import mail_text, upload, wait_finished

pytestmark = [pytest.mark.docker, pytest.mark.services]
PAYLOAD = (Path(__file__).parent / "payloads" / "exit_channels.py").read_text()
MLFLOW_ONLY = "mlflow==3.17.2\n"
HEX_LINE = re.compile(r"[0-9a-f]{16,}")

EXIT_LIMITS = {
    "M2D_EXPORT_MAX_BYTES": 20 * 1024 * 1024,
    "M2D_EXPORT_MAX_FILES": 100,
    "M2D_EXPORT_MAX_PATH_CHARS": 80,
    "M2D_TRACKING_MAX_BYTES": 60_000,
    "M2D_TRACKING_MAX_BYTES_IN": 200_000,
    "M2D_TRACKING_MAX_ANSWER_BYTES": 20_000,
    "M2D_EXIT_BYTES_PER_RESEARCHER_PER_DAY": 100_000,
    "M2D_STOP_GRACE_SECONDS": 2,
    "M2D_HEARTBEAT_SECONDS": 1,
    "M2D_RECONCILE_SECONDS": 3,
}


@pytest.fixture(scope="module")
def exit_pool(django_db_setup, smtp_server):
    pool = WorkerPool(smtp_server.port, prefix="exits-", overrides=EXIT_LIMITS).start()
    pool.start_beat()
    yield pool
    pool.stop()


@pytest.fixture
def exits(exit_pool, settings, mailbox):
    exit_pool.use(settings)
    return exit_pool


def start(client, user, cfg: dict, extra: dict | None = None) -> int:
    files = {"main.py": PAYLOAD, "cfg.json": json.dumps(cfg), "requirements.txt": MLFLOW_ONLY, **(extra or {})}
    return upload(client, user, files)


def everything_the_owner_reads(client, user, sid: int, mailbox) -> str:
    """The submission as its owner meets it: page, live part, API detail, logs and exports,
    provenance record, and every e-mail about it."""
    client.force_login(user)
    parts = [
        client.get(reverse("submissions:detail", args=[sid])).content.decode(),
        client.get(reverse("submissions:live", args=[sid])).content.decode(),
        client.get(reverse("exports:provenance", args=[sid])).content.decode(),
    ]
    for suffix in ("", "logs/", "exports/", "metrics/"):
        parts.append(client.get(f"/api/v1/submissions/{sid}/{suffix}").content.decode())
    parts += [mail_text(m) for m in mailbox.for_address(user.email) if f"Submission {sid}" in m["Subject"]]
    return "\n".join(parts)


def secret_hex() -> str:
    return next((settings.M2D_DATASET_DIR / "CLaM-sample").glob("*/*/1.npy")).read_bytes().hex()


def leaked_hex(text: str, secret: str) -> int:
    """How many distinct characters of the data set's hex appear in `text` (runs of 16 or more)."""
    seen = set()
    for run in HEX_LINE.findall(text):
        start = secret.find(run)
        if start >= 0:
            seen.update(range(start, start + len(run)))
    return len(seen)


# --- 1. names of held export files -----------------------------------------------------------------


def test_held_file_names_reach_only_the_reviewer(client, exits, make_researcher, mailbox):
    researcher = make_researcher()
    sid = start(client, researcher.user, {"mode": "names", "files": 64})
    submission = wait_finished(sid, timeout=180)
    assert submission.status == "succeeded", submission.reason
    names = [f["path"] for f in submission.export.files]
    assert len(names) == 64 and all(len(n) == 67 for n in names)

    seen = everything_the_owner_reads(client, researcher.user, sid, mailbox)
    assert not [n for n in names if n[3:] in seen], "a held file's name reached its owner"
    assert leaked_hex(seen, secret_hex()) == 0
    print(f"measured: held names: {sum(len(n) for n in names)} bytes written, 0 read by the owner")
    page = client.get(reverse("submissions:detail", args=[sid])).content.decode()
    assert "64 files, 0\xa0bytes in all, kept for review" in page
    exports = client.get(f"/api/v1/submissions/{sid}/exports/").json()
    assert exports["files"] == [] and exports["unreleased"]["held"] == 64
    assert client.get(f"/api/v1/submissions/{sid}/").json()["exports"] == []


# --- export limits: plain refusals at the export stage, never a requeue --------------------------


@pytest.mark.parametrize(
    ("cfg", "words"),
    [
        ({"mode": "many_files", "files": 300}, "more than 100 files"),
        ({"mode": "long_name", "length": 200}, "a path of 200 characters; at most 80"),
        ({"mode": "bad_name", "name": "data\u00e9\nset"}, "a name with characters other than"),
    ],
    ids=["file-count", "path-length", "name-characters"],
)
def test_exports_past_the_limits_fail_at_the_export_stage(client, exits, make_researcher, cfg, words):
    sid = start(client, make_researcher().user, cfg)
    submission = wait_finished(sid, timeout=180)
    assert (submission.status, submission.failure_stage) == ("failed", "export"), submission.reason
    assert words in submission.reason and "Nothing of" in submission.reason
    assert "data\u00e9" not in submission.reason and "aaaa" not in submission.reason  # no name is echoed
    assert submission.infrastructure_retries == 0
    assert [e.to_status for e in submission.events.all()].count("running") == 1
    assert submission.export.files == [] and not (settings.M2D_EXPORT_ROOT / str(sid)).exists()


def test_sparse_files_leave_the_host_disk_as_it_was(client, exits, make_researcher):
    free_before = shutil.disk_usage(settings.M2D_EXPORT_ROOT.parent).free
    sid = start(client, make_researcher().user, {"mode": "sparse", "files": 8, "gib": 8})
    submission = wait_finished(sid, timeout=180)
    free_after = shutil.disk_usage(settings.M2D_EXPORT_ROOT.parent).free
    assert (submission.status, submission.failure_stage) == ("failed", "export"), submission.reason
    assert "add up to 64.0 GiB, more than the export limit of 20.0 MiB" in submission.reason
    assert "8 of them are sparse files" in submission.reason
    assert submission.infrastructure_retries == 0 and "platform" not in submission.reason.lower()
    # Other tests write beside this one; the sparse files themselves cost the host nothing.
    assert free_before - free_after < 64 * 1024**2
    print(f"measured: sparse: 64 GiB claimed, host disk free changed by {(free_before - free_after) / 1024**2:.1f} MiB")


# --- 2. the run log, read live --------------------------------------------------------------------


def test_a_poller_sees_at_most_the_tail_of_one_run(client, exits, make_researcher, mailbox, django_user_model):
    from tests.helpers import sign_in_with_second_factor

    researcher = make_researcher()
    cfg = {"mode": "slow_print", "lines": 24, "width": 2048, "pause": 0.25, "fail": True}
    sid = start(client, researcher.user, cfg)
    secret = secret_hex()
    admin = django_user_model.objects.create_user("steward-" + researcher.user.username, is_staff=True)
    staff_client = client.__class__()
    sign_in_with_second_factor(staff_client, admin)

    polled, admin_saw, polls = [], 0, 0
    while not Submission.objects.get(pk=sid).is_finished:
        client.force_login(researcher.user)
        page = client.get(reverse("submissions:live", args=[sid])).content.decode()
        api = json.dumps(client.get(f"/api/v1/submissions/{sid}/logs/").json())
        if Submission.objects.get(pk=sid).is_finished:
            break  # the run ended during these two looks: they may show the tail, as after the end
        polled += [page, api]
        if Submission.objects.get(pk=sid).status == "running":
            staff_page = staff_client.get(reverse("submissions:live", args=[sid])).content.decode()
            admin_saw = max(admin_saw, leaked_hex(staff_page, secret))
        polls += 1
        time.sleep(0.3)
    submission = wait_finished(sid)
    assert (submission.status, submission.failure_stage) == ("failed", "run")
    assert polls > 10 and leaked_hex("\n".join(polled), secret) == 0, "run output reached the owner while it ran"
    assert admin_saw > 0, "the admin did not see the log while the run went"

    seen = "\n".join(everything_the_owner_reads(client, researcher.user, sid, mailbox) for _ in range(3))
    hex_bytes = leaked_hex(seen, secret)
    print(f"measured: live log: {polls} polls, 0 bytes while running, {hex_bytes} bytes of 49152 after the end")
    assert 0 < hex_bytes <= settings.M2D_LOG_TAIL_BYTES
    assert "RuntimeError: the end" in submission.reason
    assert len(submission.run_log_tail.encode()) <= settings.M2D_LOG_TAIL_BYTES


# --- 3. answers flowing into the run ---------------------------------------------------------------


def _run_with_tags(researcher, count: int, size: int) -> str:
    api, auth = f"{settings.MLFLOW_URL}/api/2.0/mlflow", (researcher.mlflow_username, researcher.mlflow_password)
    created = requests.post(
        f"{api}/runs/create", json={"experiment_id": researcher.mlflow_experiment_id}, auth=auth, timeout=10
    )
    run_id = created.json()["run"]["info"]["run_id"]
    for i in range(count):
        requests.post(
            f"{api}/runs/set-tag", json={"run_id": run_id, "key": f"cmd{i}", "value": "c" * size}, auth=auth, timeout=10
        ).raise_for_status()
    return run_id


def test_answers_into_a_run_are_capped_per_answer_and_per_run(client, exits, make_researcher):
    researcher = make_researcher()
    # Three 5,000-byte commands set from outside: one answer is ~16 kB, under the 20 kB cap.
    run_id = _run_with_tags(researcher, 3, 5000)
    sid = start(client, researcher.user, {"mode": "read_answers", "run_id": run_id, "reads": 40})
    submission = wait_finished(sid, timeout=180)
    assert submission.status == "succeeded", submission.reason
    answers = json.loads((settings.M2D_EXPORT_ROOT / str(sid) / "answers.json").read_text())
    assert 0 < answers["received"] <= 200_000 < 40 * 15_000
    assert "tracking answers" in answers["outcome"]
    assert submission.tracking_bytes_received <= 200_000
    print(f"measured: answers: {answers['received']} of {40 * 15_000} bytes of tags read back")

    # One answer past the per-answer cap reaches the run not at all.
    big = _run_with_tags(researcher, 6, 5000)
    sid = start(client, researcher.user, {"mode": "read_answers", "run_id": big, "reads": 3})
    submission = wait_finished(sid, timeout=180)
    answers = json.loads((settings.M2D_EXPORT_ROOT / str(sid) / "answers.json").read_text())
    assert answers["received"] == 0 and "at most 20000 bytes into a run" in answers["outcome"]


# --- 6. the allowance survives the run's worker ----------------------------------------------------


def test_an_adopted_run_goes_on_with_what_is_left_of_its_allowance(client, exits, make_researcher):
    researcher = make_researcher()
    sid = start(client, researcher.user, {"mode": "send_until_refused", "pause": 0.2})
    deadline = time.monotonic() + 120
    while Submission.objects.get(pk=sid).tracking_bytes < 20_000:
        assert time.monotonic() < deadline, "the run did not start sending"
        time.sleep(0.2)
    exits.kill("run")
    time.sleep(3)
    exits.restart("run")
    submission = wait_finished(sid, timeout=240)
    assert submission.status == "succeeded", submission.reason + submission.run_log_tail
    events = [e.to_status for e in submission.events.all()]
    assert events.count("running") == 1  # adopted, not run twice
    sent = json.loads((settings.M2D_EXPORT_ROOT / str(sid) / "sent.json").read_text())
    assert "tracking allowance of 60000 bytes" in sent["refusal"]
    assert submission.tracking_bytes <= 60_000
    assert sent["sent"] <= 60_000  # a fresh allowance after the adoption would have let ~100 kB through
    print(f"measured: adoption: {sent['sent']} bytes sent over both workers, allowance 60000")


# --- the researcher's budget over all their runs ---------------------------------------------------


def test_a_researchers_runs_share_one_exit_budget(client, exits, make_researcher, django_user_model):
    from tests.helpers import sign_in_with_second_factor

    researcher = make_researcher()
    totals = []
    for _ in range(3):
        sid = start(client, researcher.user, {"mode": "send_until_refused"})
        submission = wait_finished(sid, timeout=180)
        assert submission.status == "succeeded", submission.reason  # the run goes on; only the channel closed
        sent = json.loads((settings.M2D_EXPORT_ROOT / str(sid) / "sent.json").read_text())
        totals.append((sent, submission))
    (first, one), (second, two), (third, three) = totals
    assert "tracking allowance of 60000" in first["refusal"]
    assert "exit budget" in second["refusal"] and 0 < second["sent"] < first["sent"]
    assert third["sent"] == 0 and "exit budget" in third["refusal"]
    charged = one.tracking_bytes + two.tracking_bytes + three.tracking_bytes
    charged += sum(len(s.run_log_tail.encode()) for s in (one, two, three))
    assert charged <= 100_000
    print(f"measured: budget: sent {first['sent']}, {second['sent']}, {third['sent']}; charged {charged}")

    client.force_login(researcher.user)
    api = client.get(f"/api/v1/submissions/{sid}/").json()["exit_budget"]
    assert api["limit"] == 100_000 and api["remaining"] < 2_500  # less than one more parameter
    profile = client.get(reverse("accounts:profile")).content.decode()
    assert f'id="exit-budget-remaining">{filesizeformat(api["remaining"])}<' in profile

    steward = django_user_model.objects.create_superuser("budget-" + researcher.user.username, password=None)
    sign_in_with_second_factor(client, steward)
    listing = client.get(reverse("admin:accounts_researcher_changelist"), {"q": researcher.user.username})
    assert listing.status_code == 200
    assert re.search(r"9\d\.\d\xa0KB of 97\.7\xa0KB", listing.content.decode()), "no per-researcher total"
