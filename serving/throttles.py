"""Per-user quotas: DRF's scoped rate throttle, with its rates read from settings on every request
(M2D_PREDICT_RATE, M2D_BATCH_RATE), and a 429 that says which limit was reached and when to come
back, in the error shape of the endpoint that refused."""

from __future__ import annotations

import math

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

SETTING = {"predict": "M2D_PREDICT_RATE", "batch": "M2D_BATCH_RATE"}


class QuotaThrottle(ScopedRateThrottle):
    @property
    def THROTTLE_RATES(self):  # noqa: N802 - DRF's name; its class attribute is read once, at import
        return api_settings.DEFAULT_THROTTLE_RATES


class Quota:
    """Mix into an APIView with a `throttle_scope`."""

    throttle_classes = [QuotaThrottle]

    def throttled(self, request, wait):
        scope = self.throttle_scope
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(scope)
        seconds = math.ceil(wait or 1)
        raise exceptions.Throttled(
            wait=seconds,
            detail=f"You are over your quota of {rate} for {scope} ({SETTING.get(scope, scope)}); "
            f"try again in {seconds} s.",
        )


class InferenceQuota(Quota):
    """/predictions answers TorchServe's {"code", "type", "message"}; /v2 the protocol's {"error"}."""

    throttle_scope = "predict"

    def handle_exception(self, exc):
        if not isinstance(exc, exceptions.Throttled):
            return super().handle_exception(exc)
        if self.request.path.startswith("/v2"):
            body = {"error": str(exc.detail)}
        else:
            body = {"code": 429, "type": "throttled", "message": str(exc.detail)}
        return Response(body, status=429, headers={"Retry-After": str(exc.wait)})
