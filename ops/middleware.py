"""Operational endpoints and per-request log context.

/healthz, /readyz and /metrics are answered before any other middleware: probes and scrapers
speak plain HTTP to the container from inside the deployment, under whatever Host name they use,
so the HTTPS redirect, ALLOWED_HOSTS, sessions and CSRF have nothing to say about them.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from django.conf import settings
from django.http import HttpResponse, JsonResponse

from . import health
from .logs import set_submission


def healthz(request) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


def readyz(request) -> JsonResponse:
    results = health.run_checks()
    failing = [r for r in results if not r.ok]
    body = {
        "status": "ok" if not failing else "unavailable",
        "failing": [r.name for r in failing],
        "checks": {r.name: r.as_dict() for r in results},
    }
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


def metrics(request) -> HttpResponse:
    expected = settings.M2D_METRICS_TOKEN
    if not expected:
        return HttpResponse("Metrics are off: set M2D_METRICS_TOKEN to turn them on.\n", status=403)
    if not hmac.compare_digest(_token_from(request).encode(), expected.encode()):
        response = HttpResponse("A valid metrics token is required.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="m2d-metrics"'
        return response
    from .metrics import render

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
