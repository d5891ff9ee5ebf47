"""The serving relay of a host whose workers the gateway reaches across hosts (serving/relay.py):
`gunicorn m2d.relay_wsgi:application`. It refuses to start without a shared secret worth the name."""

import os

import django
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "m2d.settings")
django.setup()

if len(settings.M2D_SERVE_RELAY_SECRET) < 32:
    raise ImproperlyConfigured(
        "The serving relay needs M2D_SERVE_RELAY_SECRET, the same on the gateway, of 32 characters or more."
    )

from serving.relay import application  # noqa: E402

__all__ = ["application"]
