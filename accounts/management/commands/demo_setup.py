import json
from pathlib import Path

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.models import Researcher
from accounts.services import researcher_approve, researcher_create
from submissions.services import submission_create

ADMIN = ("admin", "admin@m2d.localhost", "m2d-demo-admin")
RESEARCHER = ("researcher", "researcher@m2d.localhost", "m2d-demo-researcher")


class Command(BaseCommand):
    help = "Create the demo admin and an approved demo researcher (idempotent); submit a sample once."

    def add_arguments(self, parser):
        parser.add_argument("--sample", type=Path, help="a zip to submit as the researcher if they have none yet")

    def handle(self, *args, sample: Path | None, **options):
        User = get_user_model()
        username, email, password = ADMIN
        admin = User.objects.filter(username=username).first()
        if admin is None:
            admin = User.objects.create_superuser(username, email, password)
        # Sign-in requires a verified address; this one is the operator's own.
        EmailAddress.objects.get_or_create(user=admin, email=email, defaults={"verified": True, "primary": True})
        username, email, password = RESEARCHER
        researcher = Researcher.objects.filter(user__username=username).first()
        if researcher is None:
            researcher = researcher_create(
                username=username,
                email=email,
                password=password,
                full_name="Demo Researcher",
                institution="Demo University",
                intended_use="Trying the platform.",
            )
        researcher = researcher_approve(by=admin, researcher=researcher, provision_now=True)
        submitted = None
        if sample and not researcher.user.submissions.exists():
            with open(sample, "rb") as upload:
                submitted = submission_create(by=researcher.user, upload=upload, filename=sample.name).pk
        self.stdout.write(
            json.dumps(
                {
                    "portal": settings.PORTAL_URL,
                    "mlflow": settings.MLFLOW_PUBLIC_URL,
                    "admin": {
                        "username": ADMIN[0],
                        "password": ADMIN[2],
                        "note": "the admin site first asks for an authenticator app (TOTP) to be set up",
                    },
                    "researcher": {"username": RESEARCHER[0], "password": RESEARCHER[2]},
                    "researcher_mlflow": {
                        "username": researcher.mlflow_username,
                        "password": researcher.mlflow_password,
                    },
                    "submitted": submitted,
                },
                indent=2,
            )
        )
