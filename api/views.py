"""REST API v1: thin views over the same services and selectors as the portal's pages."""

from __future__ import annotations

from django.conf import settings
from django.db.models import prefetch_related_objects
from django.http import FileResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from exports import downloads, storage
from exports.errors import ExportRefused, LinkExpired
from exports.models import ExportFile
from exports.reports import submission_summary
from exports.selectors import unreleased_summary, visible_entries
from submissions import exits
from submissions.logpolicy import KINDS, researcher_log_view
from submissions.metrics import metric_history
from submissions.models import Submission
from submissions.progress import QueueView
from submissions.selectors import as_rows, submission_for, submissions_visible_to
from submissions.services import SubmissionRefused, ensure_may_submit, submission_cancel, submission_create

from . import serializers as s

ERRORS = {code: OpenApiResponse(s.ErrorSerializer) for code in (401, 403, 404, 409)}
FIELD_ERRORS = {
    400: OpenApiResponse(
        s.FieldErrorsSerializer, description="what to change, per field (`archive`: why the zip was refused)"
    )
}


def _page_url(request, submission: Submission) -> str:
    return request.build_absolute_uri(reverse("submissions:detail", args=[submission.pk]))


def detail_of(request, submission: Submission) -> dict:
    prefetch_related_objects([submission], "events")  # read once, for the summary and the list
    budget = exits.budget_of(submission.owner)
    return {
        **submission_summary(submission),
        "exit_budget": {"limit": budget.limit, "used": budget.used, "remaining": budget.remaining},
        "events": [{"status": e.to_status, "at": e.at, "note": e.note} for e in submission.events.all()],
        "finished": submission.is_finished,
        **QueueView().describe(submission),
        "page_url": _page_url(request, submission),
    }


@extend_schema(tags=["submissions"])
class SubmissionViewSet(viewsets.GenericViewSet):
    """Your submissions: upload, follow, read logs and metrics, collect released exports, cancel."""

    parser_classes = [MultiPartParser, FormParser]
    serializer_class = s.SubmissionUploadSerializer  # the upload form of the browsable API
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        return submissions_visible_to(self.request.user)

    def get_object(self) -> Submission:
        return submission_for(self.request.user, int(self.kwargs["pk"]))

    @extend_schema(
        parameters=[OpenApiParameter("status", enum=Submission.Status.values, description="only this status")],
        responses={200: s.SubmissionListItemSerializer(many=True), **ERRORS, **FIELD_ERRORS},
    )
    def list(self, request):
        queryset = self.get_queryset()
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in Submission.Status.values:
                raise ValidationError({"status": [f"one of {', '.join(Submission.Status.values)}"]})
            queryset = queryset.filter(status=wanted)
        page = self.paginate_queryset(as_rows(queryset))
        queue, now = QueueView(), timezone.now()
        items = [
            {
                "id": sub.pk,
                "url": request.build_absolute_uri(reverse("api:submission-detail", args=[sub.pk])),
                "status": sub.status,
                "failure_stage": sub.failure_stage or None,
                "original_name": sub.original_name,
                "created_at": sub.created_at,
                "started_at": sub.started_at,
                "finished_at": sub.finished_at,
                "duration_seconds": round(sub.total_seconds(now), 3),
                "run_seconds": None if (ran := sub.run_seconds(now)) is None else round(ran, 3),
                "metrics": sub.metrics,
                **queue.describe(sub),
            }
            for sub in page
        ]
        return self.get_paginated_response(s.SubmissionListItemSerializer(items, many=True).data)

    @extend_schema(
        request={"multipart/form-data": s.SubmissionUploadSerializer},
        responses={201: s.SubmissionDetailSerializer, **ERRORS, **FIELD_ERRORS, 415: ERRORS[403]},
    )
    def create(self, request):
        """Upload submission.zip. It is checked at once; a refused zip says what to change."""
        try:
            ensure_may_submit(request.user)
        except SubmissionRefused as exc:
            raise PermissionDenied(str(exc)) from exc
        form = s.SubmissionUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        upload = form.validated_data["archive"]
        try:
            submission = submission_create(by=request.user, upload=upload, filename=upload.name or "submission.zip")
        except SubmissionRefused as exc:
            raise ValidationError({"archive": [str(exc)]}) from exc
        body = s.SubmissionDetailSerializer(detail_of(request, submission)).data
        location = reverse("api:submission-detail", args=[submission.pk])
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": location})

    @extend_schema(responses={200: s.SubmissionDetailSerializer, **ERRORS})
    def retrieve(self, request, pk=None):
        return Response(s.SubmissionDetailSerializer(detail_of(request, self.get_object())).data)

    @extend_schema(request=None, responses={200: s.SubmissionDetailSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a submission that has not finished; a running container is stopped."""
        submission = self.get_object()
        try:
            submission = submission_cancel(by=request.user, submission=submission)
        except SubmissionRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(s.SubmissionDetailSerializer(detail_of(request, submission)).data)

    @extend_schema(responses={200: s.LogsSerializer, **ERRORS})
    @action(detail=True, methods=["get"])
    def logs(self, request, pk=None):
        """The ends of the build and run logs, as far as the log policy lets researchers see them."""
        submission = self.get_object()
        views = {kind: researcher_log_view(submission, kind) for kind in KINDS}
        body = {
            kind: {"kind": kind, "text": view.text, "hidden_bytes": view.hidden_bytes, "note": view.note}
            for kind, view in views.items()
        }
        return Response(s.LogsSerializer(body).data)

    @extend_schema(responses={200: s.MetricsSerializer, **ERRORS})
    @action(detail=True, methods=["get"])
    def metrics(self, request, pk=None):
        """Final metrics, and every logged value per step as MLflow recorded it."""
        submission = self.get_object()
        history, available = metric_history(submission)
        body = {"final": submission.metrics, "history": history, "history_available": available}
        return Response(s.MetricsSerializer(body).data)

    @extend_schema(responses={200: s.ExportsSerializer, **ERRORS})
    @action(detail=True, methods=["get"])
    def exports(self, request, pk=None):
        """What the run wrote to /mnt/export, each file's review state, and download links for
        the released ones (for the submission's owner)."""
        submission = self.get_object()
        export = getattr(submission, "export", None)
        all_entries = list(export.entries.all()) if export else []
        entries = visible_entries(request.user, submission, all_entries)
        is_owner = request.user.pk == submission.owner_id
        released = [e for e in entries if e.state == ExportFile.State.RELEASED] if is_owner else []

        def link(file=None) -> str:
            token = downloads.download_token(user=request.user, export=export, file=file)
            return request.build_absolute_uri(reverse("api:download", args=[token]))

        files = [
            {
                "id": e.pk,
                "path": e.display_path,
                "size": e.size,
                "sha256": e.sha256,
                "state": e.state,
                "download_url": link(e) if e in released else None,
            }
            for e in entries
        ]
        body = {
            "status": export.status if export else None,
            "files": files,
            "unreleased": unreleased_summary(all_entries).as_dict(),
            "release_zip_url": link() if released else None,
            "link_expires_in_seconds": settings.M2D_EXPORT_LINK_SECONDS,
        }
        return Response(s.ExportsSerializer(body).data)


@extend_schema(
    tags=["exports"],
    responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 302: None, **ERRORS, 410: ERRORS[403]},
)
@api_view(["GET"])
def download(request, token: str):
    """A released export file (or the whole release as a zip), from a link the exports endpoint gave."""
    try:
        found = downloads.download_open(by=request.user, token=token)
    except LinkExpired as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_410_GONE)
    except ExportRefused as exc:
        raise NotFound(str(exc)) from exc
    if storage.is_local():
        return FileResponse(storage.open_file(found.key), as_attachment=True, filename=found.filename)
    return HttpResponseRedirect(storage.presigned_url(found.key, found.filename))
