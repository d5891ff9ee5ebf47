import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Researcher
from accounts.services import AccountError, researcher_approve, researcher_create
from tracking.client import MlflowUnavailable


class Command(BaseCommand):
    help = "Create a researcher; with --approve, provision MLflow and print the credentials as JSON."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", required=True)
        parser.add_argument("--password", help="portal password (default: none, so signing in is impossible)")
        parser.add_argument("--full-name", default="")
        parser.add_argument("--institution", default="")
        parser.add_argument("--approve", action="store_true")

    def handle(self, *args, username, email, password, full_name, institution, approve, **options):
        researcher = Researcher.objects.filter(user__username=username).first()
        if researcher is None:
            try:
                researcher = researcher_create(
                    username=username, email=email, password=password, full_name=full_name, institution=institution
                )
            except AccountError as exc:
                raise CommandError(str(exc)) from exc
        elif password:
            researcher.user.set_password(password)
            researcher.user.save(update_fields=["password"])
        if not approve:
            self.stdout.write(json.dumps({"username": username, "status": researcher.status}))
            return
        try:
            researcher = researcher_approve(by=None, researcher=researcher, provision_now=True)
        except MlflowUnavailable as exc:
            raise CommandError(f"approved, but MLflow could not be provisioned yet: {exc}") from exc
        self.stdout.write(
            json.dumps(
                {
                    "username": username,
                    "status": researcher.status,
                    "mlflow_url": settings.MLFLOW_PUBLIC_URL,
                    "mlflow_username": researcher.mlflow_username,
                    "mlflow_password": researcher.mlflow_password,
                    "mlflow_experiment": researcher.mlflow_experiment_name,
                    "mlflow_experiment_id": researcher.mlflow_experiment_id,
                }
            )
        )
