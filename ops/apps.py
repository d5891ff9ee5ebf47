from django.apps import AppConfig
from django.core.signals import request_finished, request_started

from . import logs


class OpsConfig(AppConfig):
    """Health, readiness, metrics and log context: what hospital IT watches."""

    name = "ops"
    verbose_name = "operations"

    def ready(self) -> None:
        logs.connect_celery_signals()
        request_started.connect(logs.clear_submission, dispatch_uid="m2d-log-context-start")
        request_finished.connect(logs.clear_submission, dispatch_uid="m2d-log-context-end")
