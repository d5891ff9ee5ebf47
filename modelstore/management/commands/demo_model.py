"""The demo's model: submit the CLaM sample as the demo researcher (once), wait for its run, have
the demo admin release what it exported, register its model folder as the researcher and give it
a worker, all through the real services, so that the store has a model that answers on the
demo's first start. Prints how to ask it with a case of the synthetic data set. Idempotent."""

import csv
import json
import shutil
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from accounts.scopes import scopes_of
from accounts.services import api_token_create
from disclosure.selectors import assessment_waiting, reports_of
from exports.models import ExportFile
from exports.services import ExportRefused, export_decide_all, export_request_release
from modelstore.asking import ask_lines
from modelstore.models import ModelAlias, RegisteredModel
from modelstore.services import model_register
from serving import selectors as serving
from serving.models import ServeWorker
from serving.services import deployment_scale
from submissions.models import Submission
from submissions.services import submission_create

NAME = "clam-malignancy"
MODEL_FOLDER = "model/"
GAVE_UP = (Submission.Status.FAILED, Submission.Status.CANCELLED, Submission.Status.TIMED_OUT)


class Command(BaseCommand):
    help = "Release the demo CLaM run's model/ folder as the demo admin and register it as the demo researcher."

    def add_arguments(self, parser):
        parser.add_argument("--sample", type=Path, required=True, help="the CLaM sample's zip")
        parser.add_argument("--researcher", default="researcher")
        parser.add_argument("--admin", default="admin")
        parser.add_argument(
            "--second-admin",
            default="demo-reviewer",
            help="staff account (made when missing, without a password) that gives a second approval ('' for none)",
        )
        parser.add_argument("--wait", type=float, default=900, help="seconds to wait for the run to finish")
        parser.add_argument("--workers", type=int, default=1, help="workers to keep ready (0: do not deploy)")
        parser.add_argument("--ready-wait", type=float, default=600, help="seconds to wait for them to be ready")

    def handle(self, *args, sample: Path, researcher: str, admin: str, wait: float, **options):
        owner = get_user_model().objects.get(username=researcher)
        registered = RegisteredModel.objects.filter(name=NAME).first()
        if registered is None:
            facts = {"model": NAME, **self._register(owner, sample, admin, wait, options["second_admin"])}
        else:
            facts = {"model": NAME, "registered": "already"}
        self._deploy(owner, facts, options["workers"], options["ready_wait"])

    def _register(self, owner, sample: Path, admin: str, wait: float, second_admin: str) -> dict:
        run = owner.submissions.filter(original_name=sample.name).exclude(status__in=GAVE_UP).first()
        if run is None:
            with open(sample, "rb") as upload:
                run = submission_create(by=owner, upload=upload, filename=sample.name)
        run = self._finished(run.pk, wait)
        if run.status != Submission.Status.SUCCEEDED:
            raise CommandError(f"submission {run.pk} {run.status}, so there is no model to register: {run.reason}")
        reviewer = get_user_model().objects.get(username=admin)
        export = run.export
        held = list(export.entries.filter(state=ExportFile.State.HELD, source=ExportFile.Source.RUN))
        if held:
            self._assessed(run.pk, wait)
            try:
                export_request_release(
                    by=run.owner, submission=run, justification="The trained CLaM model for the demo's model store."
                )
            except ExportRefused as exc:
                self.stderr.write(f"release request: {exc}")
            export.refresh_from_db()
            export_decide_all(
                by=reviewer,
                export=export,
                decision="release",
                seen={entry.pk: entry.sha256 for entry in export.entries.filter(state=ExportFile.State.HELD)},
                comment="Demo: the model folder and the results table.",
            )
            waiting = [r for r in reports_of(run.pk) if r.needs_second_admin]
            if waiting and second_admin:
                # The demo's data set is synthetic and small (too few held-out cases to assess): the
                # demo's second admin gives the second approval the rule asks for, with its reason.
                second = self._second_admin(second_admin)
                self.stdout.write(
                    f"the disclosure risk of {waiting[0].get_kind_display()} {waiting[0].shown_path}: "
                    f"{waiting[0].summary or 'not assessed yet'}; {second.username} approves its release as the "
                    "second admin (the demo's data are synthetic)"
                )
                export_decide_all(
                    by=second,
                    export=export,
                    decision="release",
                    seen={entry.pk: entry.sha256 for entry in export.entries.filter(state=ExportFile.State.HELD)},
                    comment="Demo: synthetic data, nothing of a patient can leave.",
                )
                if not export.entries.filter(state=ExportFile.State.HELD).exists():
                    waiting = []
            if waiting:
                raise CommandError(
                    f"the disclosure risk of {waiting[0].get_kind_display()} {waiting[0].shown_path} of submission "
                    f"{run.pk}: {waiting[0].summary or 'not assessed yet'}. "
                    "A second admin must approve its release on the review page."
                )
        version = model_register(
            by=run.owner, submission=run, paths=[MODEL_FOLDER], name=NAME, label="demo", visibility="approved"
        )
        return {"version": version.number, "submission": run.pk}

    @staticmethod
    def _second_admin(username: str):
        user, made = get_user_model().objects.get_or_create(
            username=username, defaults={"is_staff": True, "email": f"{username}@localhost"}
        )
        if made:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        return user

    def _deploy(self, owner, facts: dict, workers: int, ready_wait: float) -> None:
        """Scale the default version to `workers` unless it has them, wait for them, say how to ask."""
        version = ModelAlias.objects.get(model__name=NAME, name=ModelAlias.DEFAULT).version
        deployment = serving.deployment_of(version)
        if workers and (deployment is None or deployment.min_workers < workers):
            deployment = deployment_scale(by=owner, version=version, min_workers=workers)
        if deployment is None or not deployment.min_workers:
            self.stdout.write(json.dumps(facts))
            return
        ready = serving.wait_ready_count(deployment, ready_wait)
        deployment.refresh_from_db()
        facts.update(workers_ready=ready, cold_start_seconds=deployment.last_cold_start_seconds)
        self.stdout.write(json.dumps(facts))
        if ready < deployment.min_workers:
            failed = deployment.workers.filter(state=ServeWorker.State.FAILED).order_by("-pk").first()
            why = f" The last worker failed: {failed.reason[:500]}" if failed else ""
            self.stderr.write(
                f"{NAME} has {ready} of {deployment.min_workers} workers ready after {ready_wait:.0f} s.{why}"
            )
        lines = ask_lines(
            name=NAME,
            portal=settings.PORTAL_URL,
            username=owner.email or owner.username,
            token=self._token(owner),
            files=a_case(),
            m2d=_m2d_command(),
        )
        self.stdout.write(
            f"\nAsk {NAME} (as {owner.username}, with a test case of the synthetic CLaM sample):\n"
            + "".join(f"  {lines[key]}\n" for key in ("env", "m2d", "curl"))
        )

    def _token(self, owner) -> str:
        """The researcher's API token if it may predict; a new one (all scopes) otherwise."""
        token = Token.objects.filter(user=owner).first()
        if token is None or "predict" not in scopes_of(token):
            token = api_token_create(by=owner)
        return token.key

    def _assessed(self, pk: int, wait: float) -> None:
        """Wait for the disclosure job of the run's exports: what it has not assessed yet takes two admins."""
        deadline = time.monotonic() + wait
        while assessment_waiting(pk) and time.monotonic() < deadline:
            time.sleep(2)

    def _finished(self, pk: int, wait: float) -> Submission:
        deadline = time.monotonic() + wait
        while True:
            run = Submission.objects.get(pk=pk)
            if run.is_finished:
                return run
            if time.monotonic() > deadline:
                raise CommandError(f"submission {pk} is still {run.status} after {wait:.0f} s; run this again later")
            time.sleep(2)


def _m2d_command() -> str:
    """The platform's own `m2d` (installed with it in this environment), else the one on PATH."""
    beside = Path(sys.executable).parent / "m2d"
    return str(beside) if beside.exists() else shutil.which("m2d") or "m2d"


def a_case() -> dict[str, str]:
    """The four PNG views of the first case of the data set's test split, by view."""
    dataset = Path(settings.M2D_DATASET_DIR)
    with open(dataset / "clam-details-image.csv", newline="") as table:
        rows = [row for row in csv.DictReader(table, delimiter=";") if row["Split"] == "test"]
    case = rows[0]["CaseName"]
    views = {row["Views"]: str(dataset / row["ImagePath"]) for row in rows if row["CaseName"] == case}
    return {view: views[view] for view in ("LCC", "LMLO", "RCC", "RMLO")}
