"""Reads the store's pages need beyond the selectors: facets to search by, the metrics to sort by,
the submissions a researcher can register from, who may download a version's files, and the
version's bytes. Who may see a model at all is decided by the selectors alone."""

from __future__ import annotations

from collections.abc import Iterable

from accounts.people import person
from exports.models import ExportFile
from submissions.models import Submission

from . import blobs, selectors
from .models import ModelAlias, ModelFile, ModelVersion


def facets(user) -> dict[str, list]:
    """The data sets, tasks and owners (user name to search by, and the name people read) of the
    models `user` may see, for the search form."""
    models = selectors.visible_models(user)
    return {
        "datasets": sorted(set(models.values_list("dataset", flat=True))),
        "tasks": sorted(set(models.values_list("task", flat=True))),
        "owners": sorted(
            {(m.owner.get_username(), person(m.owner)) for m in models.select_related("owner__researcher")},
            key=lambda o: o[1].lower(),
        ),
    }


def default_versions(models: Iterable) -> dict[int, ModelVersion]:
    """Each model's default version, by model id."""
    aliases = ModelAlias.objects.filter(model__in=list(models), name=ModelAlias.DEFAULT).select_related("version")
    return {alias.model_id: alias.version for alias in aliases}


def numeric_metrics(versions: Iterable[ModelVersion]) -> list[str]:
    """The metric names with a number in at least one of these versions."""
    names = {
        key
        for version in versions
        for key, value in (version.metrics or {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return sorted(names)


def metric_history(versions: Iterable[ModelVersion]) -> dict[str, list[dict]]:
    """Each metric across the registered versions, version number as the step."""
    history: dict[str, list[dict]] = {}
    for version in versions:
        if not version.is_live:
            continue
        for key, value in (version.metrics or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                history.setdefault(key, []).append({"step": version.number, "value": float(value)})
    return history


def released_submissions(user):
    """`user`'s own submissions that have released files, newest first."""
    if not (user and user.is_authenticated):
        return Submission.objects.none()
    return (
        Submission.objects.filter(
            owner=user,
            export__entries__state=ExportFile.State.RELEASED,
            export__entries__source=ExportFile.Source.RUN,
        )
        .distinct()
        .order_by("-pk")
    )


def registrable_choices(user, submission) -> list[dict]:
    """What the register form offers: each folder of the release (all its files at once) and each
    file, with the folder holding a model card ticked."""
    files = list(selectors.registrable_files(user, submission))
    folders: dict[str, list] = {}
    for entry in files:
        if "/" in entry.path:
            folders.setdefault(entry.path.split("/", 1)[0] + "/", []).append(entry)
    carded = [f for f, entries in folders.items() if any(e.path == f + "m2d-model.json" for e in entries)]
    choices = [
        {"path": folder, "files": len(entries), "size": sum(e.size for e in entries), "checked": folder in carded[:1]}
        for folder, entries in sorted(folders.items())
    ]
    choices += [
        {"path": e.path, "files": 1, "size": e.size, "kind": e.kind, "checked": not carded and e.path == "model.pt"}
        for e in files
    ]
    return choices


def may_download(user, version: ModelVersion) -> bool:
    """The owner and staff, always; whoever may see the model, while the version is registered."""
    if selectors.may_manage(user, version.model):
        return True
    return version.is_live


def version_file(version: ModelVersion, path: str) -> ModelFile | None:
    return version.files.filter(path=path).first()


def open_file(file: ModelFile):
    return blobs.model_storage().open(file.storage_key, "rb")
