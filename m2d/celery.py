import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "m2d.settings")

app = Celery("m2d")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
