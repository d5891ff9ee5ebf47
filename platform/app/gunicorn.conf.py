# gunicorn settings for the portal. Environment: WEB_CONCURRENCY (workers), M2D_WEB_TIMEOUT,
# M2D_LOG_FORMAT / M2D_LOG_LEVEL (gunicorn's lines go through the platform's log format).
import os
import sys

# the repository root, two folders up, holds the ops package
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from ops.logs import logging_config  # noqa: E402

bind = os.environ.get("M2D_WEB_BIND", "0.0.0.0:8000")
# TLS of its own where no proxy stands in front (the serving relay between hosts).
certfile = os.environ.get("M2D_WEB_CERTFILE") or None
keyfile = os.environ.get("M2D_WEB_KEYFILE") or None
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
threads = int(os.environ.get("M2D_WEB_THREADS", "2"))
# Uploads of up to M2D_MAX_UPLOAD_BYTES are checked synchronously: leave them time.
timeout = int(os.environ.get("M2D_WEB_TIMEOUT", "120"))
graceful_timeout = 30
forwarded_allow_ips = "*"  # only the proxy reaches this port (see docker-compose.yml)
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
logconfig_dict = logging_config(os.environ.get("M2D_LOG_FORMAT", "text"), os.environ.get("M2D_LOG_LEVEL", "INFO"))
