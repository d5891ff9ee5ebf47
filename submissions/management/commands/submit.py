import json
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from exports.reports import submission_summary
from submissions.models import Submission
from submissions.services import SubmissionRefused, submission_create


class Command(BaseCommand):
    help = "Submit a zip as a researcher, through the same service the portal uses."

    def add_arguments(self, parser):
        parser.add_argument("zip", type=Path)
        parser.add_argument("--user", required=True)
        parser.add_argument("--wait", action="store_true", help="follow the submission to its end")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most")

    def handle(self, *args, zip: Path, user: str, wait: bool, json: bool, timeout: float, **options):
        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"no user named {user!r}")
        if not zip.is_file():
            raise CommandError(f"{zip} is not a file")
        try:
            with open(zip, "rb") as upload:
                submission = submission_create(by=owner, upload=upload, filename=zip.name)
        except SubmissionRefused as exc:
            if json:
                self.stdout.write(_json({"id": None, "status": "refused", "reason": str(exc)}))
            raise CommandError(str(exc)) from exc
        last_status = None
        deadline = time.monotonic() + timeout
        while wait and time.monotonic() < deadline:
            submission.refresh_from_db()
            if submission.status != last_status and not json:
                self.stderr.write(f"submission {submission.pk}: {submission.status}")
                last_status = submission.status
            if submission.is_finished:
                break
            time.sleep(0.5)
        summary = submission_summary(submission)
        self.stdout.write(_json(summary) if json else f"submission {submission.pk}: {submission.status}")
        if wait and submission.status != Submission.Status.SUCCEEDED:
            raise SystemExit(1)


def _json(data) -> str:
    return json.dumps(data, indent=2, default=str)
