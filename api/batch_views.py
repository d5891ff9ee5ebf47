"""Batch jobs of a model version (a zip of cases in, each case's outputs or error out) and the
audit list of a version's predictions. Errors answer `{"code", "type", "message"}` like the rest
of the management API; a job of someone else, or the audit of a model that is not yours, answers
404 exactly like one that does not exist."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json

from django.conf import settings
from django.http import Http404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from accounts.models import TokenScopes
from modelstore import selectors as store
from serving import batch
from serving import selectors as serving_selectors
from serving.errors import ServingError
from serving.models import Prediction
from serving.throttles import Quota

from .model_views import ERROR, MAX_PAGE, VERSION, StoreView, store_exception_handler

JOB_ID = OpenApiParameter("job", str, OpenApiParameter.PATH, description="the job id its creation answered")
SLACK = 64 * 1024  # a multipart body's headers and boundaries around the zip


class BatchJobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    model = serializers.CharField()
    version = serializers.IntegerField()
    status = serializers.CharField(help_text="queued, running, succeeded or failed")
    total = serializers.IntegerField(help_text="cases in the zip")
    done = serializers.IntegerField(help_text="cases the model answered")
    failed = serializers.IntegerField(help_text="cases refused or failed; each has its error in the results")
    pending = serializers.IntegerField(help_text="cases not asked yet (or never, when the job failed)")
    reason = serializers.CharField(help_text="why a failed job stopped")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    url = serializers.URLField()
    results_url = serializers.URLField()


class BatchUploadSerializer(serializers.Serializer):
    cases = serializers.FileField(help_text="a zip: case1/LCC.png, case1/LMLO.png, … (one-input model: a.png, b.png)")


class CaseResultSerializer(serializers.Serializer):
    case = serializers.CharField(help_text="the case's folder (or file) in the zip")
    status = serializers.IntegerField(allow_null=True, help_text="what /predictions would answer; null: not run")
    outputs = serializers.DictField(allow_null=True)
    error = serializers.CharField()
    prediction = serializers.UUIDField(allow_null=True, help_text="the audit record")


class BatchResultsSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    cases = CaseResultSerializer(many=True)


class PredictionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    at = serializers.DateTimeField()
    user = serializers.CharField(allow_null=True)
    endpoint = serializers.CharField(help_text="predictions, v2 or batch")
    status = serializers.IntegerField(help_text="the HTTP status answered; 0 while in flight or interrupted")
    state = serializers.ChoiceField(
        ["answered", "in flight", "interrupted"],
        help_text="interrupted: no answer past the response timeout (the gateway process stopped mid-request)",
    )
    inputs = serializers.ListField(child=serializers.DictField(), help_text="names, types, sizes and sha256")
    outputs = serializers.JSONField(allow_null=True)
    error = serializers.CharField()
    worker = serializers.IntegerField(allow_null=True)
    model_seconds = serializers.FloatField(allow_null=True)
    total_seconds = serializers.FloatField(allow_null=True)


class PredictionListSerializer(serializers.Serializer):
    predictions = PredictionSerializer(many=True)
    next_page_token = serializers.CharField(allow_null=True)


class CSVRenderer(BaseRenderer):
    media_type, format, charset = "text/csv", "csv", "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data.encode() if isinstance(data, str) else json.dumps(data).encode()


def batch_exception_handler(exc, context):
    if isinstance(exc, ServingError):
        return Response({"code": exc.code, "type": exc.type, "message": str(exc)}, status=exc.code)
    return store_exception_handler(exc, context)


class BatchView(StoreView):
    required_scopes = (TokenScopes.PREDICT,)

    def get_exception_handler(self):
        return batch_exception_handler

    def job(self, name: str, version: str, job: str):
        return batch.job_for(self.request.user, self.version(name, version), job)


def job_description(request, job) -> dict:
    version = job.version
    url = reverse("api:model-batch-job", args=[version.model.name, version.number, job.uuid])
    return {
        "id": job.uuid,
        "model": version.model.name,
        "version": version.number,
        "status": job.status,
        **batch.counts(job),
        "reason": job.reason,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
        "url": request.build_absolute_uri(url),
        "results_url": request.build_absolute_uri(f"{url}/results"),
    }


@extend_schema(tags=["models"])
class BatchJobsView(Quota, BatchView):
    throttle_scope = "batch"
    parser_classes = [MultiPartParser]

    @extend_schema(
        operation_id="models_batch_create",
        parameters=[VERSION],
        request={"multipart/form-data": BatchUploadSerializer},
        responses={202: BatchJobSerializer, **{code: ERROR for code in (400, 401, 403, 404, 409, 413, 429)}},
    )
    def post(self, request, name: str, version: str):
        """Send a zip of cases to a deployed version: 202 with the job's `Location`; the cases are
        asked one by one through the same checks and workers as /predictions. Counts against
        M2D_BATCH_RATE."""
        found = self.version(name, version)
        batch.check_deployed(found)
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not length.isdigit() or int(length) > settings.M2D_BATCH_MAX_ZIP_BYTES + SLACK:
            raise batch.BatchTooLarge(f"The zip may be at most {settings.M2D_BATCH_MAX_ZIP_BYTES:,} bytes.")
        upload = request.FILES.get("cases")
        if upload is None:
            raise exceptions.ValidationError({"cases": ["send the zip as the multipart file `cases`"]})
        job = batch.batch_job_create(by=request.user, version=found, upload=upload)
        body = job_description(request, job)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


@extend_schema(tags=["models"])
class BatchJobView(BatchView):
    @extend_schema(
        operation_id="models_batch_status",
        parameters=[VERSION, JOB_ID],
        responses={200: BatchJobSerializer, **{code: ERROR for code in (401, 403, 404)}},
    )
    def get(self, request, name: str, version: str, job: str):
        """A batch job's status and counts (yours; staff see every job)."""
        return Response(job_description(request, self.job(name, version, job)))


@extend_schema(tags=["models"])
class BatchResultsView(BatchView):
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        operation_id="models_batch_results",
        parameters=[
            VERSION,
            JOB_ID,
            OpenApiParameter("format", str, enum=["json", "csv"], description="json (default) or csv"),
        ],
        responses={
            (200, "application/json"): BatchResultsSerializer,
            (200, "text/csv"): OpenApiTypes.STR,
            **{code: ERROR for code in (401, 403, 404, 409)},
        },
    )
    def get(self, request, name: str, version: str, job: str):
        """Once the job has ended: each case's outputs, or its error (`not run` for the cases a
        failed job did not reach). CSV: one row per case, one column per output."""
        found = self.job(name, version, job)
        if found.status in (found.Status.QUEUED, found.Status.RUNNING):
            left = batch.counts(found)["pending"]
            return Response(
                {
                    "code": 409,
                    "type": "job_not_done",
                    "message": f"The job is {found.status} ({left} of {found.total} cases to go); ask again later.",
                },
                status=status.HTTP_409_CONFLICT,
            )
        rows = list(batch.results(found))
        if request.accepted_renderer.format == "csv":
            response = Response(_csv(rows), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="batch-{found.uuid}.csv"'
            return response
        return Response({"id": found.uuid, "status": found.status, "cases": rows})


def _csv(rows: list[dict]) -> str:
    outputs = sorted({key for row in rows for key in (row["outputs"] or {})})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["case", "status", "error", "prediction", *outputs])
    for row in rows:
        values = [(row["outputs"] or {}).get(key, "") for key in outputs]
        writer.writerow([_cell(v) for v in (row["case"], row["status"], row["error"], row["prediction"], *values)])
    return out.getvalue()


def _cell(value) -> str:
    """Numbers as numbers; text that a spreadsheet would run as a formula is quoted."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    text = value if isinstance(value, str) else json.dumps(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@extend_schema(tags=["models"])
class PredictionsView(StoreView):
    @extend_schema(
        operation_id="models_version_predictions",
        parameters=[
            VERSION,
            OpenApiParameter("limit", int, description=f"records per page, 1 to {MAX_PAGE} (default {MAX_PAGE})"),
            OpenApiParameter("next_page_token", str, description="from the previous page"),
        ],
        responses={200: PredictionListSerializer, **{code: ERROR for code in (400, 401, 403, 404)}},
    )
    def get(self, request, name: str, version: str):
        """The audit of a version, newest first: who asked, the inputs' names, sizes and sha256 (never
        the inputs), the status and the times. The model's owner and staff only."""
        found = self.version(name, version)
        if not store.may_manage(request.user, found.model):
            raise Http404(f"No model named {name}.")
        raw = request.query_params.get("limit", str(MAX_PAGE))
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:
            raise exceptions.ValidationError({"limit": [f"a whole number from 1 to {MAX_PAGE}"]})
        limit = int(raw)
        rows = Prediction.objects.filter(version=found).select_related("user").order_by("-pk")
        token = request.query_params.get("next_page_token")
        if token:
            rows = rows.filter(pk__lt=_before(token))
        page = list(rows[: limit + 1])
        cutoff = serving_selectors.interrupted_before()
        more, page = len(page) > limit, page[:limit]
        return Response(
            {
                "predictions": [_prediction(p, cutoff) for p in page],
                "next_page_token": _token(page[-1].pk) if more else None,
            }
        )


def _prediction(p: Prediction, cutoff) -> dict:
    return {
        "id": p.uuid,
        "at": p.at,
        "user": p.user.get_username() if p.user else None,
        "endpoint": p.endpoint,
        "status": p.status,
        "state": serving_selectors.prediction_state(p, cutoff),
        "inputs": p.inputs,
        "outputs": p.outputs,
        "error": p.error,
        "worker": p.worker_id,
        "model_seconds": p.model_seconds,
        "total_seconds": p.total_seconds,
    }


def _token(before: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": before}).encode()).decode().rstrip("=")


def _before(token: str) -> int:
    try:
        before = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))["before"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        before = None
    if not isinstance(before, int) or isinstance(before, bool):
        raise exceptions.ValidationError({"next_page_token": ["pass back the token a previous page gave"]})
    return before
