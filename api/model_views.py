"""The model store's management API: TorchServe's calls (`/models`, `/models/{m}/{v}`,
`set-default`, `DELETE` to retire) over the store's services and selectors. No call takes a URL:
models are registered from released files of the caller's own submission only.

Every error answers `{"code", "type", "message"}`; a model the caller may not see answers 404
exactly like one that does not exist."""

from __future__ import annotations

import base64
import binascii
import json

from django.http import Http404, JsonResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from accounts.models import TokenScopes
from accounts.scopes import HasTokenScope
from modelstore import card as cards
from modelstore import selectors, services
from modelstore.errors import ModelStoreError
from modelstore.errors import NotFound as StoreNotFound
from modelstore.models import ModelVersion, RegisteredModel
from serving import selectors as serving_selectors
from serving import services as serving_services
from serving.errors import ServingError
from submissions.models import Submission

from . import model_serializers as s

ERROR = OpenApiResponse(s.StoreErrorSerializer)
READ_ERRORS = {code: ERROR for code in (400, 401, 403, 404)}
WRITE_ERRORS = {code: ERROR for code in (400, 401, 403, 404, 409, 413, 415)}
MAX_BODY = 1024 * 1024  # a registration names files and carries a card (at most 64 KiB): never more
TYPES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "model_not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    415: "unsupported_media_type",
    429: "throttled",
}
MAX_PAGE = 100
VERSION = OpenApiParameter(
    "version",
    str,
    OpenApiParameter.PATH,
    pattern=r"^([0-9]+|[a-z][a-z0-9_-]{0,39})$",
    description="a version number, or an alias such as default",
)


class VersionConverter:
    """A version in a path: its number, or an alias naming it (`default`, `best`)."""

    regex = r"[0-9]+|[a-z][a-z0-9_-]{0,39}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value) -> str:
        return str(value)


class BodyTooLarge(ModelStoreError):
    code, type = 413, "body_too_large"


def store_exception_handler(exc, context):
    if isinstance(exc, ModelStoreError):
        return Response({"code": exc.code, "type": exc.type, "message": str(exc)}, status=exc.code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    if isinstance(exc, exceptions.ValidationError):
        message, kind = f"Change the request: {_flatten(detail)}", "invalid_request"
    elif isinstance(exc, exceptions.ParseError):
        message, kind = f"The body is not valid JSON ({detail}).", "invalid_json"
    else:
        message, kind = str(detail), TYPES.get(response.status_code, "error")
    response.data = {"code": response.status_code, "type": kind, "message": message}
    return response


def _flatten(detail, prefix: str = "") -> str:
    if isinstance(detail, dict):
        return "; ".join(_flatten(value, f"{prefix}{key}.") for key, value in detail.items())
    if isinstance(detail, list):
        return "; ".join(_flatten(value, prefix) for value in detail)
    return f"{prefix.rstrip('.')}: {detail}" if prefix else str(detail)


class StoreView(APIView):
    permission_classes = [IsAuthenticated, HasTokenScope]
    parser_classes = [JSONParser]
    required_scopes = {
        "GET": (TokenScopes.READ_MODELS,),
        "HEAD": (TokenScopes.READ_MODELS,),
        "POST": (TokenScopes.MANAGE_MODELS,),
        "PUT": (TokenScopes.MANAGE_MODELS,),
        "DELETE": (TokenScopes.MANAGE_MODELS,),
    }

    def get_exception_handler(self):
        return store_exception_handler

    def model(self, name: str) -> RegisteredModel:
        return selectors.model_for(self.request.user, name)

    def version(self, name: str, number: str) -> ModelVersion:
        return selectors.version_for(self.request.user, self.model(name), number)

    def body(self, serializer_class) -> dict:
        length = self.request.META.get("CONTENT_LENGTH") or "0"
        if not length.isdigit() or int(length) > MAX_BODY:
            raise BodyTooLarge(
                f"Send at most {MAX_BODY:,} bytes of JSON; the store copies files itself from the release."
            )
        if not isinstance(self.request.data, dict):
            raise exceptions.ValidationError({"body": ["send a JSON object"]})
        cards.refuse_url_fields(self.request.data)
        unknown = set(self.request.data) - set(serializer_class().fields)
        if unknown:
            raise exceptions.ValidationError({key: ["unknown field"] for key in sorted(unknown)})
        form = serializer_class(data=self.request.data)
        form.is_valid(raise_exception=True)
        return form.validated_data


def _model_url(request, model) -> str:
    return request.build_absolute_uri(reverse("api:model", args=[model.name]))


def list_item(request, model) -> dict:
    return {
        "name": model.name,
        "owner": model.owner.get_username(),
        "dataset": model.dataset,
        "task": model.task,
        "default_version": getattr(model, "default_version", None),
        "visibility": model.visibility,
        "url": _model_url(request, model),
    }


def version_description(request, version: ModelVersion, aliases: dict[str, int] | None = None) -> dict:
    if aliases is None:
        aliases = selectors.aliases_of(version.model)
    return {
        "name": version.model.name,
        "version": version.number,
        "label": version.label,
        "state": version.state,
        "aliases": sorted(alias for alias, number in aliases.items() if number == version.number),
        "created_at": version.created_at,
        "created_by": version.created_by.get_username(),
        "submission": version.submission_id,
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in version.files.all()],
        "card": version.card,
        "metrics": version.metrics,
        "metrics_source": version.metrics_source,
        "image_digest": version.image_digest,
        "dataset_fingerprint": version.dataset_fingerprint,
        "provenance_url": request.build_absolute_uri(reverse("exports:provenance", args=[version.submission_id])),
        "url": request.build_absolute_uri(reverse("api:model-version", args=[version.model.name, version.number])),
        "deployment": serving_selectors.deployment_description(version),
    }


def _count(request, key: str, default: int | None) -> int:
    raw = request.query_params.get(key, request.data.get(key) if isinstance(request.data, dict) else None)
    if raw is None:
        if default is None:
            raise exceptions.ValidationError({key: ["give a number of workers"]})
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise exceptions.ValidationError({key: ["a whole number"]}) from None
    if not 0 <= value <= 3600:
        raise exceptions.ValidationError({key: ["between 0 and 3600"]})
    return value


def _flag(request, key: str) -> bool | None:
    raw = request.query_params.get(key)
    if raw is None:
        return None
    if raw.lower() not in ("true", "1", "yes", "false", "0", "no"):
        raise exceptions.ValidationError({key: ["true or false"]})
    return raw.lower() in ("true", "1", "yes")


def _decode_token(token: str) -> str:
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise exceptions.ValidationError({"next_page_token": ["pass back the token a previous page gave"]}) from exc
    if not isinstance(after, str):
        raise exceptions.ValidationError({"next_page_token": ["pass back the token a previous page gave"]})
    return after


def _encode_token(after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")


@extend_schema(tags=["models"])
class ModelsView(StoreView):
    @extend_schema(
        operation_id="models_list",
        parameters=[
            OpenApiParameter("limit", int, description=f"models per page, 1 to {MAX_PAGE} (default {MAX_PAGE})"),
            OpenApiParameter("next_page_token", str, description="from the previous page"),
        ],
        responses={200: s.ModelListSerializer, **READ_ERRORS},
    )
    def get(self, request):
        """The models you may see, by name, a page at a time."""
        raw = request.query_params.get("limit", str(MAX_PAGE))
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:
            raise exceptions.ValidationError({"limit": [f"a whole number from 1 to {MAX_PAGE}"]})
        limit = int(raw)
        models = selectors.visible_models(request.user)
        token = request.query_params.get("next_page_token")
        if token:
            models = models.filter(name__gt=_decode_token(token))
        page = list(models[: limit + 1])
        more = len(page) > limit
        page = page[:limit]
        return Response(
            {
                "models": [list_item(request, model) for model in page],
                "next_page_token": _encode_token(page[-1].name) if more else None,
            }
        )

    @extend_schema(
        operation_id="models_register",
        request=s.RegisterSerializer,
        responses={201: s.VersionSerializer, **WRITE_ERRORS},
    )
    def post(self, request):
        """Register released files of your own submission as the next version of a model (made
        when the name is new). An `m2d-model.json` in the released folder is the card; a `card`
        sent here overrides its fields."""
        data = self.body(s.RegisterSerializer)
        source = data["source"]
        submission = Submission.objects.filter(pk=source["submission"]).first()
        if submission is None:
            raise StoreNotFound(f"There is no submission {source['submission']}.")
        version = services.model_register(
            by=request.user,
            submission=submission,
            paths=source["paths"],
            name=data["name"],
            label=data.get("label", ""),
            visibility=data.get("visibility"),
            card=data.get("card"),
            sha256=source.get("sha256"),
        )
        body = version_description(request, version)
        location = reverse("api:model-version", args=[version.model.name, version.number])
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": location})


@extend_schema(tags=["models"])
class ModelView(StoreView):
    @extend_schema(operation_id="models_describe", responses={200: s.ModelSerializer, **READ_ERRORS})
    def get(self, request, name: str):
        """A model, its aliases and its versions."""
        model = self.model(name)
        aliases = selectors.aliases_of(model)
        return Response(
            {
                **list_item(request, model),
                "created_at": model.created_at,
                "aliases": aliases,
                "versions": [version_description(request, v, aliases) for v in selectors.versions_of(model)],
            }
        )


@extend_schema(tags=["models"])
class AllVersionsView(StoreView):
    @extend_schema(operation_id="models_versions_all", responses={200: s.VersionSerializer(many=True), **READ_ERRORS})
    def get(self, request, name: str):
        """Every version of a model, retired ones included."""
        model = self.model(name)
        aliases = selectors.aliases_of(model)
        return Response([version_description(request, v, aliases) for v in selectors.versions_of(model)])


@extend_schema(tags=["models"])
class VersionView(StoreView):
    @extend_schema(
        operation_id="models_version", parameters=[VERSION], responses={200: s.VersionSerializer, **READ_ERRORS}
    )
    def get(self, request, name: str, version: str):
        """One version: its files, card, metrics, state and aliases."""
        return Response(version_description(request, self.version(name, version)))

    @extend_schema(
        operation_id="models_version_scale",
        parameters=[
            VERSION,
            OpenApiParameter("min_worker", int, description="workers kept ready (0: none)"),
            OpenApiParameter("max_worker", int, description="at most this many (default: min_worker)"),
            OpenApiParameter(
                "gpu", bool, description="each worker holds a GPU of its host, from the run slots (default: as before)"
            ),
            OpenApiParameter("synchronous", bool, description="answer once min_worker workers are ready"),
            OpenApiParameter("timeout", int, description="seconds to wait when synchronous (default 120)"),
        ],
        request=None,
        responses={
            200: s.StatusSerializer,
            202: s.StatusSerializer,
            503: ERROR,
            504: s.StatusSerializer,
            **WRITE_ERRORS,
        },
    )
    def put(self, request, name: str, version: str):
        """Scale a version's serving workers (TorchServe's scale call): 202 while they start, 200 when
        `synchronous` and ready, 504 with the counts when `timeout` passes first."""
        found = self.version(name, version)
        if not selectors.may_manage(request.user, found.model):
            raise exceptions.PermissionDenied("Only the model's owner or staff may scale it.")
        try:
            low = _count(request, "min_worker", None)
            deployment = serving_services.deployment_scale(
                by=request.user,
                version=found,
                min_workers=low,
                max_workers=_count(request, "max_worker", low),
                gpu=_flag(request, "gpu"),
            )
        except ServingError as exc:
            refused = Response({"code": exc.code, "type": exc.type, "message": str(exc)}, status=exc.code)
            if exc.code == 503:
                refused["Retry-After"] = "30"
            return refused
        where = f"model: {found.model.name}, version: {found.number}"
        if request.query_params.get("synchronous", "").lower() not in ("true", "1", "yes"):
            return Response({"status": "Processing worker updates..."}, status=status.HTTP_202_ACCEPTED)
        ready = serving_selectors.wait_ready_count(deployment, _count(request, "timeout", 120))
        if ready < deployment.min_workers:
            return Response(
                {"status": f"Workers scaling in progress: {ready} of {deployment.min_workers} ready for {where}"},
                status=status.HTTP_504_GATEWAY_TIMEOUT,
            )
        return Response({"status": f"Workers scaled to {ready} for {where}"})

    @extend_schema(
        operation_id="models_version_retire", parameters=[VERSION], responses={200: s.StatusSerializer, **WRITE_ERRORS}
    )
    def delete(self, request, name: str, version: str):
        """Retire a version (its files are kept for audit). The default version goes last:
        409 while other versions are registered."""
        found = self.version(name, version)
        services.model_version_retire(by=request.user, version_obj=found)
        return Response({"status": f'Version {found.number} of "{found.model.name}" retired'})


@extend_schema(tags=["models"])
class SetDefaultView(StoreView):
    @extend_schema(
        operation_id="models_set_default",
        parameters=[VERSION],
        request=None,
        responses={200: s.StatusSerializer, **WRITE_ERRORS},
    )
    def put(self, request, name: str, version: str):
        """Make this version the model's default, in one step."""
        found = self.version(name, version)
        services.model_set_default(by=request.user, model=found.model, version=found.number)
        return Response({"status": f'Default version of "{found.model.name}" is now {found.number}'})


@extend_schema(tags=["models"])
class AliasView(StoreView):
    @extend_schema(
        operation_id="models_alias_set", request=s.AliasSerializer, responses={200: s.StatusSerializer, **WRITE_ERRORS}
    )
    def put(self, request, name: str, alias: str):
        """Point an alias at a version (`default` too: that is set-default)."""
        model = self.model(name)
        number = self.body(s.AliasSerializer)["version"]
        services.model_alias_set(by=request.user, model=model, alias=alias, version=number)
        return Response({"status": f'Alias "{alias}" of "{model.name}" now points to version {number}'})

    @extend_schema(operation_id="models_alias_delete", responses={200: s.StatusSerializer, **WRITE_ERRORS})
    def delete(self, request, name: str, alias: str):
        """Delete an alias; `default` can only be moved."""
        model = self.model(name)
        services.model_alias_delete(by=request.user, model=model, alias=alias)
        return Response({"status": f'Alias "{alias}" of "{model.name}" deleted'})


@extend_schema(tags=["models"], responses={(200, "application/json"): OpenApiTypes.OBJECT})
class CardSchemaView(APIView):
    """The JSON Schema every model card (m2d-model.json) is checked against."""

    permission_classes = [AllowAny]
    authentication_classes = []

    def get(self, request):
        return JsonResponse(cards.schema())
