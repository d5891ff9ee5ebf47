"""The disclosure report on the reviewer's page, the release rule it sets, what the owner is told,
and the provenance record: on the real portal, database and export storage, with the runner's
facts recorded as a finished job reports them."""

from __future__ import annotations

import hashlib
import html
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.urls import reverse

from disclosure.facts import AttackFigures, ModelAssessment, TableCheck
from disclosure.models import DisclosureReport
from disclosure.services import (
    ALLOWED,
    IllegalMove,
    _settle,
    disclosure_record_fault,
    disclosure_record_model,
    disclosure_record_table,
    disclosure_request,
)
from exports.models import Export, ExportEvent
from exports.services import export_request_release, run_exports_record
from submissions.facts import RunFacts
from tests.conftest import WorkerPool
from tests.helpers import sign_in_with_second_factor

from ..exports.conftest import seen_on_page
from .test_engine import LOOKUP_MODEL, SMOOTH_MODEL, acro_outputs, card, readable, training_lookup

A = ExportEvent.Action
REPO = Path(__file__).resolve().parents[3]
MODEL_FILES = {
    "model/m2d-model.json": b'{"entrypoint": "predict.py:Model"}\n',
    "model/predict.py": b"class Model: ...\n",
    "model/weights.pt": b"\x00weights" * 64,
    "counts.csv": b"group,count\na,3\nb,40\n",
}


def overfitted(auc: float = 0.83) -> ModelAssessment:
    attack = AttackFigures("worst-case membership", auc, auc - 0.07, min(auc + 0.07, 1.0), 0.61, 0.0001)
    return ModelAssessment("model/", attacks=(attack,), n_train=60, n_test=40, seconds=31.0)


def assessed_submission(finished_submission, owner, model: ModelAssessment | None, table: TableCheck | None = None):
    submission = finished_submission(owner, MODEL_FILES)
    reports = {r.kind: r for r in disclosure_request(submission=submission, paths=list(MODEL_FILES))}
    if model is not None:
        assert disclosure_record_model(report=reports["model"], assessment=model)
    disclosure_record_table(
        report=reports["table"],
        check=table or TableCheck("counts.csv", is_table=True, cells=2, small_cells=0, min_count=2),
    )
    export_request_release(by=owner, submission=submission, justification="The model for the validation study.")
    return submission


def review(client, export, action: str, comment: str = "", **extra):
    return client.post(
        reverse("exports:review", args=[export.pk]),
        {**seen_on_page(client, export), "action": action, "comment": comment, **extra},
    )


def states(export) -> dict[str, str]:
    return {f.path: f.state for f in export.entries.all()}


def test_a_model_over_the_threshold_needs_a_second_admin_and_a_written_reason(
    settings, export_storage, users, finished_submission, client
):
    settings.M2D_EXPORT_TWO_PERSON_RULE = False  # one admin releases anything else
    owner, admin1, admin2 = users["owner"], users["admin1"], users["admin2"]
    submission = assessed_submission(finished_submission, owner, overfitted())
    export = submission.export

    sign_in_with_second_factor(client, admin1)
    queue = client.get(reverse("exports:review_queue")).content.decode()
    assert "1 model or table needs two admins" in queue
    page = client.get(reverse("exports:review", args=[export.pk])).content.decode()
    section = page[page.index('id="disclosure"') :]
    assert "worst-case membership attack AUC 0.83 (95% CI 0.76–0.90), advantage 0.61" in section
    assert "on 60 training and 40 held-out cases: this model reveals who was in the training set" in section
    assert "needs a second admin and a written reason" in page[page.index('id="rule"') :]
    weights_row = page[page.index("<code>model/weights.pt</code>") :]
    assert "release needs a second admin and a written reason" in weights_row[: weights_row.index("</tr>")]

    response = review(client, export, "release_all")
    assert (
        "model/m2d-model.json: the disclosure risk of model model/ is over the threshold" in response.content.decode()
    )
    assert set(states(export).values()) == {"held"}  # nothing moved, not even the table that passed

    review(client, export, "release_all", "Aggregate weights only; the study's DPO agreed.")
    assert states(export) == {
        "counts.csv": "released",  # passed ACRO's rules: one admin is enough
        "model/m2d-model.json": "held",
        "model/predict.py": "held",
        "model/weights.pt": "held",
    }
    assert (
        "a second, different admin must approve it"
        in review(client, export, "release_all", "Again, me.").content.decode()
    )

    sign_in_with_second_factor(client, admin2)
    response = review(client, export, "release_all", "Agreed: the DPO's approval is on file.")
    assert set(states(export).values()) == {"released"}, response.content.decode()[:3000]
    export.refresh_from_db()
    assert export.status == Export.Status.REVIEWED
    weights = export.entries.get(path="model/weights.pt")
    trail = [(e.action, e.by_id, e.comment) for e in weights.events.order_by("at", "id")]
    assert trail == [
        (A.APPROVED, admin1.pk, "Aggregate weights only; the study's DPO agreed."),
        (A.APPROVED, admin2.pk, "Agreed: the DPO's approval is on file."),
        (A.RELEASED, admin2.pk, "Agreed: the DPO's approval is on file."),
    ]


def test_a_model_with_no_evidence_of_disclosure_is_released_by_one_admin(
    settings, export_storage, users, finished_submission, client
):
    settings.M2D_EXPORT_TWO_PERSON_RULE = False
    submission = assessed_submission(finished_submission, users["owner"], overfitted(auc=0.52))
    sign_in_with_second_factor(client, users["admin1"])
    assert "needs two admins" not in client.get(reverse("exports:review_queue")).content.decode()
    page = client.get(reverse("exports:review", args=[submission.export.pk])).content.decode()
    assert "AUC 0.52" in page and "no evidence of disclosure" in page
    assert "release needs a second admin" not in page
    review(client, submission.export, "release_all")
    assert set(states(submission.export).values()) == {"released"}


@pytest.mark.parametrize("settled", ["pending", "model_problem", "fault"])
def test_a_model_not_assessed_takes_the_two_admin_path(
    settled, settings, export_storage, users, finished_submission, client
):
    settings.M2D_EXPORT_TWO_PERSON_RULE = False
    owner = users["owner"]
    submission = assessed_submission(finished_submission, owner, None)
    if settled == "model_problem":
        crash = ModelAssessment("model/", model_problem="predict() raised ValueError: patient 0042 has no LCC view")
        disclosure_record_model(report=submission.disclosure_reports.get(kind="model"), assessment=crash)
    elif settled == "fault":
        assert disclosure_record_fault(submission_id=submission.pk, fault="the engine did not answer in 60 s") == 1
    export = submission.export
    sign_in_with_second_factor(client, users["admin1"])
    again = client.post(reverse("exports:assess_again", args=[export.pk]), follow=True).content.decode()
    if settled == "fault":  # the platform's failure may be redone; the model's answer stands
        assert "Disclosure risk: 1 report asked for again." in again
        assert submission.disclosure_reports.get(kind="model").verdict == "pending"
        assert export.submission.export_events.filter(action=A.DISCLOSURE_AGAIN, by=users["admin1"]).exists()
        assert disclosure_record_fault(submission_id=submission.pk, fault="the engine did not answer in 60 s") == 1
    else:
        assert "nothing to redo" in html.unescape(again)

    sign_in_with_second_factor(client, users["admin1"])
    page = client.get(reverse("exports:review", args=[export.pk])).content.decode()
    expected = {
        "pending": "being assessed since",
        "model_problem": "could not be assessed: predict() raised ValueError: patient 0042 has no LCC view",
        "fault": "could not be assessed: the platform failed (the engine did not answer in 60 s)",
    }[settled]
    assert expected in page
    assert ("Assess again what the platform failed to assess" in page) == (settled == "fault")
    assert "written reason" in review(client, export, "release_all", "ok").content.decode()
    review(client, export, "release_all", "Reviewed the weights by hand; releasing.")
    assert states(export)["model/weights.pt"] == "held" and states(export)["counts.csv"] == "released"
    sign_in_with_second_factor(client, users["admin2"])
    review(client, export, "release_all", "Second look: agreed.")
    assert set(states(export).values()) == {"released"}

    # The owner sees the verdict, never the model's error output (it ran on the data).
    client.force_login(owner)
    panel = client.get(reverse("submissions:detail", args=[submission.pk])).content.decode()
    verdicts = panel[panel.index('id="disclosure-verdicts"') :]
    verdicts = verdicts[: verdicts.index("</div>")]
    assert "model model/: " + ("being assessed" if settled == "pending" else "could not be assessed") in verdicts
    assert "has no LCC view" not in panel


def test_a_table_under_the_minimum_count_is_held_back_and_the_owner_sees_no_name_before_release(
    settings, export_storage, users, finished_submission, client
):
    settings.M2D_EXPORT_TWO_PERSON_RULE = False
    owner = users["owner"]
    small = TableCheck("counts.csv", is_table=True, cells=2, small_cells=1, min_count=10, detail="ACRO threshold rule")
    submission = assessed_submission(finished_submission, owner, overfitted(auc=0.5), table=small)

    client.force_login(owner)
    panel = client.get(reverse("submissions:detail", args=[submission.pk])).content.decode()
    verdicts = panel[panel.index('id="disclosure-verdicts"') :]
    verdicts = html.unescape(verdicts[: verdicts.index("</div>")])
    assert "model 1: membership attack AUC 0.50: no evidence of disclosure" in verdicts
    assert "table 2: over ACRO's table rules: it may identify people" in verdicts
    assert "counts.csv" not in panel and "model/" not in panel  # held files are not named to their owner

    sign_in_with_second_factor(client, users["admin1"])
    page = client.get(reverse("exports:review", args=[submission.export.pk])).content.decode()
    assert "1 of 2 cells under the minimum count of 10: the table may identify people (ACRO threshold rule)" in page
    refused = review(client, submission.export, "release_all", "").content.decode()
    assert "counts.csv: the disclosure risk of table counts.csv is over the threshold" in html.unescape(refused)
    assert set(states(submission.export).values()) == {"held"}
    review(client, submission.export, "release_all", "Counts are of sites, not of people.")
    assert states(submission.export)["counts.csv"] == "held"  # waits for a second admin
    assert states(submission.export)["model/weights.pt"] == "released"

    # The provenance record keeps the figures; the unreleased table is not named in it.
    client.force_login(owner)
    record = json.loads(client.get(reverse("exports:provenance", args=[submission.pk])).content)
    kept = {(r["kind"], r["path"], r["verdict"]) for r in record["disclosure_risk"]}
    assert kept == {("model", "model/", "clear"), ("table", None, "over")}
    model = next(r for r in record["disclosure_risk"] if r["kind"] == "model")
    assert model["attacks"][0]["auc"] == 0.5 and model["cases"] == {"train": 60, "held_out": 40}
    assert model["thresholds"]["max_auc"] == settings.M2D_DISCLOSURE_MAX_AUC
    assert not re.search(r"counts\.csv", json.dumps(record["disclosure_risk"]))


def test_reports_are_settled_once_and_a_new_run_asks_afresh(
    settings, export_storage, users, finished_submission, client
):
    submission = finished_submission(users["owner"], MODEL_FILES)
    (model, table) = disclosure_request(submission=submission, paths=list(MODEL_FILES))
    assert (model.kind, model.path, table.kind, table.path) == ("model", "model/", "table", "counts.csv")
    assert disclosure_record_model(report=model, assessment=overfitted())
    assert not disclosure_record_model(report=model, assessment=overfitted(auc=0.5))  # a redelivered job
    model.refresh_from_db()
    assert model.verdict == "over" and model.attacks[0]["auc"] == 0.83

    for source, targets in ALLOWED.items():
        for target in set(DisclosureReport.Verdict) - set(targets):
            if source == DisclosureReport.Verdict.PENDING:
                with pytest.raises(IllegalMove):
                    _settle(table, target)
    superuser = type(users["admin1"]).objects.create_superuser(username=f"root{submission.pk}", password="pw-root-long")
    sign_in_with_second_factor(client, superuser)
    listing = client.get(reverse("admin:disclosure_disclosurereport_changelist")).content.decode()
    assert "over the threshold" in listing and "being assessed" in listing
    assert disclosure_request(submission=submission, paths=["notes.txt"]) == []
    assert not DisclosureReport.objects.filter(submission=submission).exists()


@pytest.mark.docker
def test_a_run_worker_assesses_the_exported_models_and_the_release_rule_follows(
    settings, users, finished_submission, smtp_server, client, tmp_path
):
    """The job as a run ends: sent to a real run worker, which copies the export out of storage,
    asks each model in the submission's image, attacks the answers and checks the table in the
    disclosure image. A model that memorised its training cases needs two admins; one that keeps
    nothing of any case is released by one."""
    dataset = tmp_path / "clam"
    generate = [
        sys.executable,
        str(REPO / "dataset" / "generate.py"),
        "--cases",
        "160",
        "--size",
        "64x52",
        "--out",
        str(dataset),
    ]
    subprocess.run(generate, check=True, capture_output=True)
    readable(dataset)
    settings.M2D_EXPORT_ROOT = tmp_path / "exports"
    settings.M2D_EXPORT_ROOT.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(settings.M2D_EXPORT_ROOT)},
        },
    }
    settings.M2D_EXPORT_TWO_PERSON_RULE = False
    runtime = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", settings.M2D_RUNTIME_IMAGE],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    model_card = json.dumps(card()).encode()
    files = {
        "memorised/m2d-model.json": model_card,
        "memorised/predict.py": LOOKUP_MODEL.encode(),
        "memorised/lookup.json": json.dumps(training_lookup(dataset)).encode(),
        "smooth/m2d-model.json": model_card,
        "smooth/predict.py": SMOOTH_MODEL.encode(),
        "tables/by-density.csv": b"diagnosis,density,n\nbenign,A,40\nbenign,B,3\nmalignant,A,12\nmalignant,B,25\n",
    }
    acro = acro_outputs(tmp_path / "acro-session")  # the run's code built two tables with ACRO
    acro_files = {str(p.relative_to(acro)): p.read_bytes() for p in acro.rglob("*") if p.is_file()}
    # The same folder twice more, its passed table of counts changed after ACRO checked it: once with
    # a cell under the minimum and ACRO's checksum written anew, once with no checksum to match.
    small = b"site,benign,malignant\neast,20,20\nnorth,20,3\nsouth,20,20\n"
    edited = acro_files["output_0_0.csv"].replace(b",20\n", b",21\n", 1)
    for folder, table, checksum in (
        ("acro", acro_files["output_0_0.csv"], acro_files["checksums/output_0_0.csv.txt"]),
        ("forged", small, hashlib.sha256(small).hexdigest().encode()),
        ("edited", edited, acro_files["checksums/output_0_0.csv.txt"]),
    ):
        changed = {"output_0_0.csv": table, "checksums/output_0_0.csv.txt": checksum}
        files.update({f"{folder}/{name}": changed.get(name, data) for name, data in acro_files.items()})
    work_dir = tmp_path / "disclosure-work"
    pool = WorkerPool(
        smtp_server.port,
        prefix="disclosure-",
        overrides={
            "M2D_DATASET_DIR": dataset,
            "M2D_EXPORT_ROOT": settings.M2D_EXPORT_ROOT,
            "M2D_DISCLOSURE_WORK_DIR": work_dir,
            "M2D_DISCLOSURE_MEMORY": "2g",
            "M2D_DISCLOSURE_CPUS": 1.0,
        },
        roles=("run",),
    ).start()
    try:
        pool.use(settings)
        submission = finished_submission(users["owner"], files, image_id=runtime)
        started = time.monotonic()
        assert len(disclosure_request(submission=submission, paths=list(files))) == 15  # 2 models, 13 tables
        deadline = started + 900
        while submission.disclosure_reports.filter(verdict="pending").exists():
            assert time.monotonic() < deadline, "the disclosure job did not settle its reports in 900 s"
            time.sleep(1)
        took = time.monotonic() - started
    finally:
        pool.stop()
    reports = {r.path: r for r in submission.disclosure_reports.all()}
    for path, report in reports.items():
        print(f"\n{path}: {report.verdict}: {report.summary} ({report.seconds:.1f} s)")
    print(f"\nthe whole job, from the message to the last report: {took:.1f} s")
    memorised, smooth, table = reports["memorised/"], reports["smooth/"], reports["tables/by-density.csv"]
    assert memorised.verdict == "over", memorised.summary
    assert memorised.worst_attack["auc"] >= 0.9 and memorised.n_train > 100 and memorised.n_test > 20
    assert smooth.verdict == "clear", smooth.summary
    assert smooth.worst_attack["auc"] < settings.M2D_DISCLOSURE_MAX_AUC
    assert table.verdict == "over" and table.small_cells == 1, table.summary
    dominated, counts = reports["acro/output_1_0.csv"], reports["acro/output_0_0.csv"]
    assert dominated.verdict == "over" and dominated.dominated_cells == 1, dominated.summary
    assert "ACRO marked it fail; 1 of 6 cells dominated by one or two contributors" in dominated.summary
    assert counts.verdict == "clear" and counts.summary.startswith("ACRO's checks passed"), counts.summary
    assert reports["acro/session_summary.json"].verdict == "over"  # ACRO's notes for the output checker
    forged, edited = reports["forged/output_0_0.csv"], reports["edited/output_0_0.csv"]
    assert forged.verdict == "over" and forged.small_cells == 1, forged.summary
    assert forged.summary.startswith("ACRO marked it pass; 1 of 6 cells under the minimum count of 10; the platform")
    assert "finds 1 of 6 count cells under 10, more than ACRO's results flag" in forged.summary
    assert edited.verdict == "over" and "not the one ACRO checked" in edited.summary, edited.summary
    assert not (work_dir / str(submission.pk)).exists()  # the copies of the models go with the job

    owner, admin1, admin2 = users["owner"], users["admin1"], users["admin2"]
    export_request_release(by=owner, submission=submission, justification="The models for the validation study.")
    export = submission.export
    sign_in_with_second_factor(client, admin1)
    page = client.get(reverse("exports:review", args=[export.pk])).content.decode()
    assert "this model reveals who was in the training set" in page and "no evidence of disclosure" in page
    review(client, export, "release_all", "The DPO agreed to release every model of this study.")
    after_one = states(export)
    # ACRO's pass and its bookkeeping go with one admin; its fail and its notes for the checker need two
    bookkeeping = ("/results.json", "/config.json")
    acro_one_admin = {p for p in files if p.endswith(bookkeeping) or "/checksums/" in p} | {"acro/output_0_0.csv"}
    one_admin = {"smooth/m2d-model.json", "smooth/predict.py", *acro_one_admin}
    assert {p for p, s in after_one.items() if s == "released"} == one_admin
    sign_in_with_second_factor(client, admin2)
    review(client, export, "release_all", "Second admin: agreed with the DPO's decision.")
    assert set(states(export).values()) == {"released"}


@pytest.mark.parametrize("enabled", [True, False])
def test_recording_a_runs_exports_asks_for_the_assessment_of_its_models_and_tables(
    enabled, settings, export_storage, users, finished_submission
):
    settings.M2D_DISCLOSURE_ENABLED = enabled
    submission = finished_submission(users["owner"], {"notes.txt": b"nothing to assess\n"})
    folder = settings.M2D_EXPORT_ROOT / f"run-{submission.pk}"
    for path, content in {**MODEL_FILES, "mlflow/MLmodel": b"flavors: {}\n", "notes.txt": b"hi\n"}.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(content)

    run_exports_record(facts=RunFacts(submission_id=submission.pk, export_folder=folder, exit_code=0))
    reports = [(r.kind, r.path, r.verdict) for r in submission.disclosure_reports.all()]
    if enabled:
        assert reports == [
            ("model", "mlflow/", "pending"),
            ("model", "model/", "pending"),
            ("table", "counts.csv", "pending"),
        ]
    else:
        assert reports == []
