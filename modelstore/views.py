"""The model store's pages: the store, a model's page with its card, versions, aliases and metrics,
registering a version from a released submission, the owner's and staff's actions, downloads,
and the staff list of every model and version."""

from __future__ import annotations

import tempfile
import zipfile
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.second_factor import staff_second_factor
from serving import selectors as serving_selectors
from serving import services as serving_services
from serving.errors import ServingError
from serving.models import Deployment, ServeWorker
from submissions.charts import line_charts
from submissions.selectors import submission_for

from . import asking, browse, selectors, services
from .errors import InvalidRequest, ModelStoreError
from .models import ModelAlias, ModelEvent, RegisteredModel

SORTS = {"name": "name", "-created": "newest first"}
CARD_TEXT = (  # the summary heads the page
    ("intended_use", "Intended use"),
    ("not_for", "Not for"),
    ("mechanism", "How it works"),
    ("validation_and_performance", "Validation and performance"),
    ("publication", "Publication"),
)


def _store_sorts(metrics: list[str]) -> list[tuple[str, str]]:
    sorts = list(SORTS.items())
    for metric in metrics:
        sorts += [(f"-metric:{metric}", f"{metric}, highest first"), (f"metric:{metric}", f"{metric}, lowest first")]
    return sorts


@login_required
def store(request):
    ask = {key: request.GET.get(key, "").strip() for key in ("q", "dataset", "task", "owner", "sort")}
    every = list(selectors.visible_models(request.user))
    metrics = browse.numeric_metrics(browse.default_versions(every).values())
    sorts = _store_sorts(metrics)
    sort = ask["sort"] if ask["sort"] in dict(sorts) else "name"
    models = list(
        selectors.visible_models(
            request.user, query=ask["q"], dataset=ask["dataset"], task=ask["task"], owner=ask["owner"], sort=sort
        )
    )
    defaults = browse.default_versions(models)
    metric = sort.removeprefix("-").removeprefix("metric:") if "metric:" in sort else ""
    for model in models:
        model.default = defaults.get(model.pk)
        model.sort_value = (model.default.metrics or {}).get(metric) if metric and model.default else None
    context = {
        "models": models,
        "ask": ask,
        "sort": sort,
        "sorts": sorts,
        "metric": metric,
        "facets": browse.facets(request.user),
        "filtered": any(ask[key] for key in ("q", "dataset", "task", "owner")),
        "can_register": browse.released_submissions(request.user).exists(),
    }
    return render(request, "modelstore/store.html", context)


def _card_sections(card: dict) -> dict:
    return {
        "text": [(title, card[key]) for key, title in CARD_TEXT if card.get(key)],
        "training": card.get("training_data") or {},
        "inputs": card.get("inputs") or [],
        "outputs": card.get("outputs") or [],
        "warnings": card.get("warnings") or [],
        "facts": [
            (t, card[k])
            for k, t in (("entrypoint", "Entrypoint"), ("licence", "Licence"), ("contact", "Contact"))
            if card.get(k)
        ],  # fmt: skip
    }


@login_required
def model_page(request, name: str):
    model = selectors.model_for(request.user, name)
    versions = list(selectors.versions_of(model).select_related("created_by__researcher"))
    aliases = selectors.aliases_of(model)
    wanted = request.GET.get("version", "")
    shown = next((v for v in versions if str(v.number) == wanted), None) or next(
        (v for v in versions if v.number == aliases.get(ModelAlias.DEFAULT)), versions[-1] if versions else None
    )
    manage = selectors.may_manage(request.user, model)
    for version in versions:
        version.alias_names = sorted(a.name for a in version.aliases.all())
        version.total_size = sum(f.size for f in version.files.all())
        version.downloadable = browse.may_download(request.user, version)
        version.serving = _serving(version)
    submission = None
    if manage and request.user.pk == model.owner_id and request.GET.get("submission", "").isdigit():
        submission = browse.released_submissions(request.user).filter(pk=int(request.GET["submission"])).first()
    context = {
        "model": model,
        "versions": versions,
        "shown": shown,
        "card": _card_sections(shown.card if shown else {}),
        "aliases": sorted((n, v) for n, v in aliases.items() if n != ModelAlias.DEFAULT),
        "default": aliases.get(ModelAlias.DEFAULT),
        "charts": line_charts(browse.metric_history(versions)),
        "several": sum(v.is_live for v in versions) > 1,
        "manage": manage,
        "is_owner": request.user.pk == model.owner_id,
        "provenance": manage,  # the provenance record is the owner's and staff's (exports:provenance)
        "submissions": browse.released_submissions(request.user) if request.user.pk == model.owner_id else [],
        "chosen": submission,
        "choices": browse.registrable_choices(request.user, submission) if submission else [],
        "events": model.events.select_related("by__researcher", "version").order_by("-at", "-id")[:20]
        if manage
        else [],
        "ask": _ask(request, model, shown),
    }
    return render(request, "modelstore/model.html", context)


def _serving(version) -> dict | None:
    """What the page shows of a version's deployment; None when it never had one."""
    deployment = serving_selectors.deployment_of(version)
    if deployment is None:
        return None
    counts = serving_selectors.worker_counts(deployment)
    failed = deployment.workers.filter(state=ServeWorker.State.FAILED).order_by("-pk").first()
    return {
        "min": deployment.min_workers,
        "max": deployment.max_workers,
        "deployed": deployment.max_workers > 0,
        "ready": counts["ready"],
        "starting": counts["starting"],
        "failed": counts["failed"],
        "last_failure": failed.reason if failed else "",
        "cold_start": deployment.last_cold_start_seconds,
        "degraded": deployment.state == Deployment.State.DEGRADED,
        "gpu": deployment.gpu,
    }


def _ask(request, model, shown) -> dict | None:
    """The command lines that ask the shown version, with one placeholder file per card input."""
    if shown is None or not shown.is_live:
        return None
    is_default = shown.number == selectors.aliases_of(model).get(ModelAlias.DEFAULT)
    return asking.ask_lines(
        name=model.name,
        version=None if is_default else shown.number,
        portal=request.build_absolute_uri("/"),
        username=request.user.email or request.user.get_username(),
        token="TOKEN",
        files=asking.placeholder_files(shown.card or {}),
    )


def _back(request, fallback: str):
    target = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return redirect(target if target and safe else fallback)


@login_required
def register(request):
    """GET: the form for a submission's released files. POST: register them as the next version."""
    if request.method != "POST":
        picked = request.GET.get("submission", "")
        submission = (
            browse.released_submissions(request.user).filter(pk=int(picked)).first() if picked.isdigit() else None
        )
        context = {
            "submissions": browse.released_submissions(request.user),
            "chosen": submission,
            "choices": browse.registrable_choices(request.user, submission) if submission else [],
            "name": request.GET.get("name", ""),
            "visibilities": RegisteredModel.Visibility.choices,
        }
        return render(request, "modelstore/register.html", context)
    picked = request.POST.get("submission", "")
    if not picked.isdigit():
        messages.error(request, "Choose the submission whose released files make the model.")
        return _back(request, reverse("modelstore:register"))
    submission = submission_for(request.user, int(picked))
    name = request.POST.get("name", "").strip()
    summary = request.POST.get("summary", "").strip()
    try:
        version = services.model_register(
            by=request.user,
            submission=submission,
            paths=request.POST.getlist("paths"),
            name=name,
            label=request.POST.get("label", ""),
            visibility=request.POST.get("visibility") or None,
            card={"summary": summary} if summary else None,
        )
    except ModelStoreError as exc:
        messages.error(request, str(exc))
        query = urlencode({"submission": submission.pk, "name": name})
        return _back(request, f"{reverse('modelstore:register')}?{query}")
    messages.success(request, f"Registered {version.model.name} version {version.number}.")
    return redirect(f"{reverse('modelstore:model', args=[version.model.name])}?version={version.number}")


def _act(request, name: str, action, done: str):
    model = selectors.model_for(request.user, name)
    try:
        action(model)
    except ModelStoreError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done)
    return _back(request, reverse("modelstore:model", args=[model.name]))


@login_required
@require_POST
def set_default(request, name: str, number: int):
    def act(model):
        services.model_set_default(by=request.user, model=model, version=number)

    return _act(request, name, act, f"Version {number} is now the default of {name}.")


@login_required
@require_POST
def scale(request, name: str, number: int):
    model = selectors.model_for(request.user, name)
    version = selectors.version_for(request.user, model, number)
    if not selectors.may_manage(request.user, model):
        messages.error(request, "Only the model's owner or staff may scale it.")
        return _back(request, reverse("modelstore:model", args=[model.name]))
    low, high = request.POST.get("min_workers", ""), request.POST.get("max_workers", "")
    try:
        if not low.isdigit() or (high and not high.isdigit()):
            raise ServingError("Give the workers as whole numbers: 0 or more.")
        deployment = serving_services.deployment_scale(
            by=request.user,
            version=version,
            min_workers=int(low),
            max_workers=int(high) if high else None,
            gpu=bool(request.POST.get("gpu")) if request.POST.get("gpu_asked") else None,  # the stop form keeps it
        )
    except ServingError as exc:
        messages.error(request, str(exc))
    else:
        if deployment.max_workers:
            messages.success(
                request,
                f"{name} version {number} scaled to {deployment.min_workers}–{deployment.max_workers} workers"
                f"{', a GPU each' if deployment.gpu else ''}; "
                "they start in the background (reload to see them ready).",
            )
        else:
            messages.success(request, f"{name} version {number} is no longer deployed; its workers stop.")
    return _back(request, f"{reverse('modelstore:model', args=[model.name])}?version={number}#serving")


@login_required
@require_POST
def retire(request, name: str, number: int):
    def act(model):
        version = selectors.version_for(request.user, model, number)
        services.model_version_retire(by=request.user, version_obj=version, comment=request.POST.get("comment", ""))

    return _act(request, name, act, f"{name} version {number} retired; its files and card stay for audit.")


@login_required
@require_POST
def alias_set(request, name: str):
    alias, number = request.POST.get("alias", "").strip(), request.POST.get("version", "")

    def act(model):
        if request.POST.get("delete"):
            services.model_alias_delete(by=request.user, model=model, alias=alias)
        elif not number.isdigit():
            raise InvalidRequest("Choose the version the alias points at.")
        else:
            services.model_alias_set(by=request.user, model=model, alias=alias, version=int(number))

    done = f"Alias {alias} deleted." if request.POST.get("delete") else f"{alias} now points at version {number}."
    return _act(request, name, act, done)


def _downloadable(request, name: str, number: int):
    model = selectors.model_for(request.user, name)
    version = selectors.version_for(request.user, model, number)
    if not browse.may_download(request.user, version):
        raise Http404  # a retired version's files are its owner's and staff's
    return version


@login_required
def download_file(request, name: str, number: int, path: str):
    version = _downloadable(request, name, number)
    file = browse.version_file(version, path)
    if file is None:
        raise Http404
    source = browse.open_file(file)
    services.model_download_record(by=request.user, version=version, file=file)
    return FileResponse(source, as_attachment=True, filename=file.path.rsplit("/", 1)[-1])


@login_required
def download_zip(request, name: str, number: int):
    version = _downloadable(request, name, number)
    buffer = tempfile.TemporaryFile()  # noqa: SIM115 - FileResponse closes it
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in version.files.all():
            with browse.open_file(file) as source, archive.open(file.path, "w") as target:
                for block in iter(lambda source=source: source.read(1024 * 1024), b""):
                    target.write(block)
    buffer.seek(0)
    services.model_download_record(by=request.user, version=version)
    return FileResponse(buffer, as_attachment=True, filename=f"{name}-{number}.zip")


@login_required
@staff_second_factor
def staff_list(request):
    if not (request.user.is_active and request.user.is_staff):
        raise Http404  # researchers are not told that admin pages exist
    models = list(
        selectors.all_models_for_staff().prefetch_related(
            "versions__files", "versions__aliases", "versions__created_by__researcher"
        )
    )
    for model in models:
        for version in model.versions.all():
            version.alias_names = sorted(a.name for a in version.aliases.all())
            version.total_size = sum(f.size for f in version.files.all())
    events = ModelEvent.objects.select_related("model", "version", "by__researcher").order_by("-at", "-id")[:50]
    return render(request, "modelstore/staff.html", {"models": models, "events": events})
