"""Seed a running stack (`make up`) for bench/load.sh: one approved researcher with 1,000
submissions, an API token and a signed-in session. Prints shell variables for the load script."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "m2d.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402

from accounts.services import api_token_create, researcher_approve, researcher_create  # noqa: E402
from submissions.models import Submission, SubmissionEvent  # noqa: E402

USERNAME = "load-tester"
COUNT = int(os.environ.get("BENCH_LOAD_SUBMISSIONS", "1000"))


def main() -> None:
    user = get_user_model().objects.filter(username=USERNAME).first()
    if user is None:
        researcher = researcher_create(username=USERNAME, email=f"{USERNAME}@example.org", password="load-" * 4)
        researcher_approve(by=None, researcher=researcher, provision_now=True)
    user = get_user_model().objects.get(username=USERNAME)  # with its researcher as approved
    missing = COUNT - Submission.objects.filter(owner=user).count()
    rng = random.Random(7)
    finished = ["succeeded", "failed", "cancelled"]
    if missing > 0:
        rows = Submission.objects.bulk_create(
            Submission(
                owner=user,
                status=rng.choice(finished),
                archive="submissions/none.zip",
                archive_sha256="0" * 64,
                original_name=f"load-{i}.zip",
                metrics={"loss": rng.random(), "auc": rng.random()},
            )
            for i in range(missing)
        )
        SubmissionEvent.objects.bulk_create(
            event
            for row in rows
            for event in (
                SubmissionEvent(submission=row, from_status="", to_status="received"),
                SubmissionEvent(submission=row, from_status="running", to_status=row.status),
            )
        )
    client = Client()
    client.force_login(user)
    newest = Submission.objects.filter(owner=user).order_by("-created_at", "-id").first()
    print(f"M2D_LOAD_TOKEN={api_token_create(by=user).key}")
    print(f"M2D_LOAD_SESSION={client.cookies[settings.SESSION_COOKIE_NAME].value}")
    print(f"M2D_LOAD_SUBMISSION={newest.pk}")


if __name__ == "__main__":
    main()
