import os
from logging.config import dictConfig

from celery import Celery, signals
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "m2d.settings")

app = Celery("m2d")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def use_django_logging(**kwargs):
    """Workers and beat log like the portal (M2D_LOG_FORMAT), not in Celery's own format."""
    dictConfig(settings.LOGGING)
