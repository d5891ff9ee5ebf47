"""The demo's model: submit the CLaM sample as the demo researcher (once), wait for its run, have
the demo admin release what it exported, and register its model folder as the researcher, all
through the real services, so that the store is not empty on the demo's first start. Idempotent."""

import json
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from exports.models import ExportFile
from exports.services import ExportRefused, export_decide_all, export_request_release
from modelstore.models import RegisteredModel
from modelstore.services import model_register
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
        parser.add_argument("--wait", type=float, default=900, help="seconds to wait for the run to finish")

    def handle(self, *args, sample: Path, researcher: str, admin: str, wait: float, **options):
        if RegisteredModel.objects.filter(name=NAME).exists():
            self.stdout.write(json.dumps({"model": NAME, "registered": "already"}))
            return
        owner = get_user_model().objects.get(username=researcher)
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
        version = model_register(
            by=run.owner, submission=run, paths=[MODEL_FOLDER], name=NAME, label="demo", visibility="approved"
        )
        self.stdout.write(json.dumps({"model": NAME, "version": version.number, "submission": run.pk}))

    def _finished(self, pk: int, wait: float) -> Submission:
        deadline = time.monotonic() + wait
        while True:
            run = Submission.objects.get(pk=pk)
            if run.is_finished:
                return run
            if time.monotonic() > deadline:
                raise CommandError(f"submission {pk} is still {run.status} after {wait:.0f} s; run this again later")
            time.sleep(2)
