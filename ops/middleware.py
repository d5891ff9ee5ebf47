"""Operational endpoints and per-request log context.

/healthz, /readyz and /metrics are answered before any other middleware: probes and scrapers
speak plain HTTP to the container from inside the deployment, under whatever Host name they use,
so the HTTPS redirect, ALLOWED_HOSTS, sessions and CSRF have nothing to say about them.

/readyz tells anyone whether the portal is ready, and only staff or the holder of the metrics
token what fails and why: the details name internal hosts, folders and error messages.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user
from django.db import DatabaseError
from django.http import HttpResponse, JsonResponse

from . import health
from .logs import set_submission
from .metrics import render


def healthz(request) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


def readyz(request) -> JsonResponse:
    results = health.run_checks()
    failing = [r for r in results if not r.ok]
    body: dict = {"status": "ok" if not failing else "unavailable"}
    if _has_metrics_token(request) or _is_staff(request):
        body["failing"] = [r.name for r in failing]
        body["checks"] = {r.name: r.as_dict() for r in results}
    return JsonResponse(body, status=503 if failing else 200)


def _token_from(request) -> str:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":  # Prometheus' basic_auth: any user name, the token as password
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return ""


def _has_metrics_token(request) -> bool:
    expected = settings.M2D_METRICS_TOKEN
    return bool(expected) and hmac.compare_digest(_token_from(request).encode(), expected.encode())


def _is_staff(request) -> bool:
    """A signed-in staff user, read from the session cookie here because this answers before the
    session and authentication middleware run. With the database down nobody can be looked up:
    the token and `manage.py readyz` still give the details then."""
    key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not key:
        return False
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(key)
    try:
        user = get_user(request)
    except DatabaseError:
        return False
    return user.is_active and user.is_staff


def metrics(request) -> HttpResponse:
    expected = settings.M2D_METRICS_TOKEN
    if not expected:
        return HttpResponse("Metrics are off: set M2D_METRICS_TOKEN to turn them on.\n", status=403)
    if not _has_metrics_token(request):
        response = HttpResponse("A valid metrics token is required.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="m2d-metrics"'
        return response
    return HttpResponse(render(), content_type="text/plain; version=0.0.4; charset=utf-8")


ENDPOINTS = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}


class OpsEndpointsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        view = ENDPOINTS.get(request.path_info.rstrip("/") or "/")
        if view is not None and request.method in ("GET", "HEAD"):
            response = view(request)
            response["Cache-Control"] = "no-store"
            return response
        return self.get_response(request)


class SubmissionLogContextMiddleware:
    """Lines logged while serving one submission's pages carry its id, Django's own request log
    line included: that one is written after the middleware has returned, so the id is cleared
    when the request ends (`request_finished`, see apps.py), not here."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        match = request.resolver_match
        submission_id = view_kwargs.get("submission_id")
        if submission_id is None and match is not None and "submissions" in match.namespaces:
            submission_id = view_kwargs.get("pk")
        if submission_id is not None and str(submission_id).isdigit():
            set_submission(int(submission_id))
        return None
