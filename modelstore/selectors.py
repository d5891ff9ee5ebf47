"""Reads of the model store, with who-may-see-what decided here: a model the user may not see is
answered exactly like one that does not exist."""

from __future__ import annotations

from django.db.models import F, FloatField, OuterRef, Q, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.http import Http404

from exports.models import ExportFile

from .models import ModelAlias, ModelVersion, RegisteredModel

Vis = RegisteredModel.Visibility
MAX_NUMBER = 2**31 - 1  # beyond any version number, and beyond what every database compares


def _is_approved(user) -> bool:
    researcher = getattr(user, "researcher", None)
    return researcher is not None and researcher.is_approved


def _visible(user):
    models = RegisteredModel.objects.select_related("owner__researcher")
    if not (user and user.is_authenticated and user.is_active):
        return models.none()
    if user.is_staff:
        return models
    seen = Q(owner=user) | Q(visibility=Vis.SIGNED_IN)
    if _is_approved(user):
        seen |= Q(visibility=Vis.APPROVED)
    return models.filter(seen)


def _with_default(models):
    default = ModelAlias.objects.filter(model=OuterRef("pk"), name=ModelAlias.DEFAULT)
    return models.annotate(default_version=Subquery(default.values("version__number")[:1]))


def visible_models(user, *, query: str = "", dataset: str = "", task: str = "", owner: str = "", sort: str = "name"):
    """The models `user` may see, filtered, each with `default_version` (its number). `sort` is
    name, -name, created, -created, or metric:<name> / -metric:<name> (the default version's
    metric; models without it last)."""
    models = _with_default(_visible(user))
    if query:
        models = models.filter(Q(name__icontains=query) | Q(versions__card__summary__icontains=query)).distinct()
    if dataset:
        models = models.filter(dataset=dataset)
    if task:
        models = models.filter(task=task)
    if owner:
        models = models.filter(owner__username=owner)
    descending = sort.startswith("-")
    key = sort.removeprefix("-")
    if key.startswith("metric:") and len(key) > len("metric:"):
        metric = key.removeprefix("metric:")
        value = ModelAlias.objects.filter(model=OuterRef("pk"), name=ModelAlias.DEFAULT).annotate(
            value=Cast(KeyTextTransform(metric, "version__metrics"), FloatField())
        )
        models = models.annotate(metric_value=Subquery(value.values("value")[:1]))
        order = F("metric_value").desc(nulls_last=True) if descending else F("metric_value").asc(nulls_last=True)
        return models.order_by(order, "name")
    if key == "created":
        return models.order_by(f"{'-' if descending else ''}created_at", "name")
    return models.order_by("-name" if descending and key == "name" else "name")


def model_for(user, name: str) -> RegisteredModel:
    found = _with_default(_visible(user)).filter(name=name).first()
    if found is None:
        raise Http404(f"No model named {name}.")
    return found


def version_for(user, model: RegisteredModel, number) -> ModelVersion:
    """Version `number` (or an alias name) of a model `user` may see."""
    model_for(user, model.name)
    versions = ModelVersion.objects.filter(model=model).select_related("model", "submission", "created_by")
    if isinstance(number, int) or (isinstance(number, str) and number.isascii() and number.isdigit()):
        found = versions.filter(number=int(number)).first() if int(number) <= MAX_NUMBER else None
    else:
        found = versions.filter(aliases__model=model, aliases__name=number).first()
    if found is None:
        raise Http404(f"{model.name} has no version {number}.")
    return found


def visible_version(user, name: str, number) -> ModelVersion:
    """version_for(user, model_for(user, name), number) in one query, for the inference gateway,
    which asks it on every request. Its Http404 does not say whether the model or the version
    is missing."""
    versions = ModelVersion.objects.filter(model__in=_visible(user).filter(name=name).values("pk"))
    if isinstance(number, int) or (isinstance(number, str) and number.isascii() and number.isdigit()):
        found = versions.filter(number=int(number)) if int(number) <= MAX_NUMBER else None
    else:
        found = versions.filter(aliases__model_id=F("model_id"), aliases__name=number)
    found = found.select_related("model").first() if found is not None else None
    if found is None:
        raise Http404(f"No model named {name} with a version {number}.")
    return found


def versions_of(model: RegisteredModel):
    return model.versions.prefetch_related("files", "aliases").order_by("number")


def aliases_of(model: RegisteredModel) -> dict[str, int]:
    return dict(model.aliases.values_list("name", "version__number"))


def may_manage(user, model: RegisteredModel) -> bool:
    return bool(user and user.is_active and (user.is_staff or user.pk == model.owner_id))


def registrable_files(user, submission):
    """The released files of `user`'s own submission, the only ones a model can be made from."""
    if not (user and user.is_authenticated) or submission.owner_id != user.pk:
        return ExportFile.objects.none()
    return ExportFile.objects.filter(
        export__submission=submission, source=ExportFile.Source.RUN, state=ExportFile.State.RELEASED
    ).order_by("path")


def all_models_for_staff():
    return _with_default(RegisteredModel.objects.select_related("owner__researcher")).order_by("name")
