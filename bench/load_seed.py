"""Seed a running stack (`make up`) for bench/load.sh: one approved researcher with 1,000
submissions, an API token and a signed-in session. Prints shell variables for the load script."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Submission, seed_finished  # noqa: E402 (sets Django up against the stack's database)
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402

from accounts.services import api_token_create, researcher_approve, researcher_create  # noqa: E402

USERNAME = "load-tester"
COUNT = int(os.environ.get("BENCH_LOAD_SUBMISSIONS", "1000"))


def main() -> None:
    user = get_user_model().objects.filter(username=USERNAME).first()
    if user is None:
        researcher = researcher_create(username=USERNAME, email=f"{USERNAME}@example.org", password="load-" * 4)
        researcher_approve(by=None, researcher=researcher, provision_now=True)
    user = get_user_model().objects.get(username=USERNAME)  # with its researcher as approved
    missing = COUNT - Submission.objects.filter(owner=user).count()
    if missing > 0:
        seed_finished(user, missing)
    client = Client()
    client.force_login(user)
    newest = Submission.objects.filter(owner=user).order_by("-created_at", "-id").first()
    print(f"M2D_LOAD_TOKEN={api_token_create(by=user).key}")
    print(f"M2D_LOAD_SESSION={client.cookies[settings.SESSION_COOKIE_NAME].value}")
    print(f"M2D_LOAD_SUBMISSION={newest.pk}")


if __name__ == "__main__":
    main()
