"""Inference endpoints: the Open Inference Protocol (KServe V2) for machines, and the seed's
`/predictions/{model}` for people with image files. Every route needs a token with `predict`."""

from __future__ import annotations

import base64
import binascii
import json

from django.conf import settings
from django.http import Http404
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import HasTokenScope

from . import gateway, inputs, selectors
from .auth import BasicTokenAuthentication, OneQueryTokenAuthentication
from .errors import BodyTooLarge, InvalidInput, ServingError
from .throttles import InferenceQuota


class _Inference(InferenceQuota, APIView):
    authentication_classes = [OneQueryTokenAuthentication, BasicTokenAuthentication]
    permission_classes = [IsAuthenticated, HasTokenScope]
    required_scopes = ("predict",)
    parser_classes = []  # bodies are read raw, within M2D_SERVE_MAX_BODY
    schema = None  # the Open Inference Protocol is its own contract; the management API is in /api/v1/schema/

    def raw_body(self, request) -> bytes:
        declared = _declared_length(request)
        cap = settings.M2D_SERVE_MAX_BODY
        if declared > cap:
            raise BodyTooLarge(f"The request is {declared} bytes; the limit is {cap} (M2D_SERVE_MAX_BODY).")
        data = request._request.read(cap + 1)
        if len(data) > cap:
            raise BodyTooLarge(f"The request is over the limit of {cap} bytes (M2D_SERVE_MAX_BODY).")
        return data


def _declared_length(request) -> int:
    """The body's declared size, checked before a byte of it is read."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidInput("The Content-Length header is not a number.") from None


def _torchserve_error(exc: Exception, status: int) -> Response:
    kind = getattr(exc, "type", "model_not_found" if status == 404 else "error")
    response = Response({"code": status, "type": kind, "message": str(exc)}, status=status)
    if status == 503:
        response["Retry-After"] = "5"
    return response


class Predictions(_Inference):
    """POST/PUT /predictions/{model}[/{version}]: the raw file as the body for a one-input model,
    or multipart with one part per input name (LCC, LMLO, RCC, RMLO)."""

    def post(self, request, name: str, version: str | None = None):
        try:
            given = self._given(request, name, version)
            answer = gateway.predict(
                user=request.user, name=name, version_ref=version, given=given, endpoint="predictions"
            )
        except Http404:
            return _torchserve_error(Http404(f"Model not found: {name}"), 404)
        except ServingError as exc:
            return _torchserve_error(exc, exc.code)
        response = Response(answer.outputs)
        response["X-M2D-Model-Version"] = f"{answer.model}/{answer.version}"
        response["X-M2D-Prediction"] = answer.prediction
        return response

    put = post

    def _given(self, request, name, version) -> dict:
        content_type = request.META.get("CONTENT_TYPE", "")
        if content_type.startswith("multipart/form-data"):
            declared = _declared_length(request)
            if declared > settings.M2D_SERVE_MAX_BODY:
                raise BodyTooLarge(f"The request is {declared} bytes; the limit is {settings.M2D_SERVE_MAX_BODY}.")
            files = request._request.FILES
            return {key: self._part(files[key]) for key in files}
        data = self.raw_body(request)
        return {gateway.ONLY_INPUT: (inputs.sniff(data), data)}

    def _part(self, upload) -> tuple[str, bytes]:
        data = upload.read()
        return inputs.sniff(data), data


class V2Server(_Inference):
    def get(self, request):
        return Response({"name": "m2d", "version": "2", "extensions": []})


class V2Live(_Inference):
    def get(self, request):
        return Response({"live": True})


class V2Ready(_Inference):
    def get(self, request):
        return Response({"ready": True})


def _v2_error(exc: Exception, status: int) -> Response:
    response = Response({"error": str(exc)}, status=status)
    if status == 503:
        response["Retry-After"] = "5"
    return response


class V2Model(_Inference):
    def get(self, request, name: str, version: str | None = None):
        try:
            found = gateway.resolve(request.user, name, version)
        except Http404:
            return _v2_error(f"model {name} not found", 404)
        card = found.card
        return Response(
            {
                "name": found.model.name,
                "versions": [str(found.number)],
                "platform": "m2d",
                "inputs": [_tensor(spec) for spec in card.get("inputs", [])],
                "outputs": [_tensor(spec) for spec in card.get("outputs", [])],
            }
        )


class V2ModelReady(_Inference):
    def get(self, request, name: str, version: str | None = None):
        try:
            found = gateway.resolve(request.user, name, version)
        except Http404:
            return _v2_error(f"model {name} not found", 404)
        ready = bool(selectors.ready_workers(found))
        return Response({"name": found.model.name, "ready": ready}, status=200 if ready else 503)


class V2Infer(_Inference):
    def post(self, request, name: str, version: str | None = None):
        try:
            given = self._given(self.raw_body(request))
            answer = gateway.predict(user=request.user, name=name, version_ref=version, given=given, endpoint="v2")
        except Http404:
            return _v2_error(f"model {name} not found", 404)
        except ServingError as exc:
            return _v2_error(exc, exc.code)
        return Response(
            {
                "model_name": answer.model,
                "model_version": str(answer.version),
                "id": answer.prediction,
                "outputs": [_v2_output(k, v) for k, v in answer.outputs.items()],
            }
        )

    def _given(self, body: bytes) -> dict:
        try:
            request = json.loads(body)
            given = {}
            for tensor in request["inputs"]:
                data = tensor["data"]
                raw = base64.b64decode(data[0] if isinstance(data, list) else data, validate=True)
                kind = (tensor.get("parameters") or {}).get("content_type") or inputs.sniff(raw)
                given[tensor["name"]] = (kind, raw)
            return given
        except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
            raise InvalidInput(
                'Send {"inputs": [{"name", "datatype": "BYTES", "shape": [1], "data": ["<base64>"], '
                '"parameters": {"content_type": "image/png"}}]}.'
            ) from None


def _tensor(spec: dict) -> dict:
    return {"name": spec.get("name"), "datatype": spec.get("datatype", "BYTES"), "shape": spec.get("shape", [-1])}


def _v2_output(name: str, value) -> dict:
    data = value if isinstance(value, list) else [value]
    datatype = "FP64" if all(isinstance(v, float | int) for v in data) else "BYTES"
    return {"name": name, "datatype": datatype, "shape": [len(data)], "data": data}
