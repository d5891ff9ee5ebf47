"""Every change in the model store: register a version, move the default and other aliases,
retire a version; and the record of each download. Keyword-only, atomic, audited; refusals are
ModelStoreError subclasses whose `.code` is the HTTP status the API answers with.

A registration copies the released bytes into the store by sha256 before its transaction commits;
when it is refused or fails after that, it deletes the blobs it created (see blobs.py)."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from exports.provenance import final_metrics
from submissions.selectors import submission_timings

from . import blobs, browse, selectors, sources, transitions
from .card import check_entrypoint, merged, refuse_url_fields, validated
from .errors import Conflict, InvalidName, InvalidRequest, ModelStoreError, NotAllowed, NotFound  # noqa: F401 (callers catch them here)
from .models import ModelAlias, ModelDownload, ModelEvent, ModelFile, ModelVersion, RegisteredModel

log = logging.getLogger(__name__)
A = ModelEvent.Action
V = ModelVersion.State
NAME = re.compile(r"^(?=.{3,100}$)[a-z0-9]+(?:-[a-z0-9]+)+$")
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,39}$")
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
RESERVED_ALIASES = ("all", "aliases")  # path segments of the API: /models/{name}/all


def check_name(name) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidName(
            f"Name the model <dataset>-<task> in lowercase letters and digits joined by hyphens, at most 100 "
            f"characters, e.g. clam-malignancy (got {name!r})."
        )
    return name


def _check_visibility(visibility) -> str:
    if visibility not in RegisteredModel.Visibility.values:
        raise InvalidRequest(
            f"visibility is one of {', '.join(RegisteredModel.Visibility.values)}, not {visibility!r}."
        )
    return visibility


def _ensure_manager(by, model: RegisteredModel) -> None:
    if not (by.is_active and (by.is_staff or by.pk == model.owner_id)):
        raise NotAllowed(f"Only the owner of {model.name} or staff can change it.")


def _event(model, action, *, by, version=None, comment="") -> ModelEvent:
    return ModelEvent.objects.create(model=model, version=version, action=action, by=by, comment=comment)


def _training_facts(submission, card: dict, dataset: str) -> tuple[dict, str, str]:
    """The card's training data from the provenance record, and the image digest and data set
    fingerprint the version keeps."""
    provenance = getattr(submission, "provenance", None)
    export = getattr(submission, "export", None)
    fingerprint = (provenance.dataset_fingerprint if provenance else "") or (
        export.dataset_fingerprint if export else ""
    )
    image = provenance.image if provenance else {}
    digest = next(iter(image.get("repo_digests") or []), "") or image.get("id", "") or submission.image_id or ""
    timings = submission_timings(submission)
    training = {
        **card.get("training_data", {}),
        "dataset": card.get("training_data", {}).get("dataset") or dataset.upper(),
        "fingerprint": fingerprint,
        "submission": submission.pk,
        "run_started_at": timings["run_start"],
        "run_ended_at": timings["run_end"],
    }
    return training, digest[:200], fingerprint


def model_register(
    *,
    by,
    submission,
    paths: list[str],
    name: str,
    label: str = "",
    visibility: str | None = None,
    card: dict | None = None,
    sha256: dict | None = None,
) -> ModelVersion:
    """Register released files of `by`'s own submission as the next version of model `name`
    (made, owned by `by`, when it does not exist). `visibility` sets the model's (default: private
    for a new model, unchanged for an existing one)."""
    refuse_url_fields({"card": card, "sha256": sha256, "paths": paths})
    check_name(name)
    label = (label or "").strip()
    if label and not LABEL.match(label):
        raise InvalidRequest("Give the label as letters, digits, '.', '_', '+' or '-' (up to 40, e.g. 1.0), or none.")
    if visibility is not None:
        _check_visibility(visibility)
    if card is not None and not isinstance(card, dict):
        raise InvalidRequest("card must be a JSON object.")
    if by.pk != submission.owner_id:
        raise NotAllowed(f"Submission {submission.pk} is not yours; register models from your own submissions.")
    existing = RegisteredModel.objects.filter(name=name).first()
    if existing is not None and not (by.is_staff or by.pk == existing.owner_id):
        raise Conflict(f"The name {name} belongs to another researcher's model; choose another <dataset>-<task> name.")
    if label and existing is not None and existing.versions.filter(label=label).exists():
        raise Conflict(f"{name} already has a version labelled {label}; choose another label.")
    chosen = sources.choose(submission, paths, sha256)
    dataset, task = name.split("-", 1)
    final_card = validated(merged(sources.card_in_release(chosen), card))
    check_entrypoint(final_card, {item.path for item in chosen})
    training, image_digest, fingerprint = _training_facts(submission, final_card, dataset)
    metrics, metrics_source = final_metrics(submission)
    final_card.update(training_data=training, metrics=metrics)

    created: list[str] = []
    try:
        keys = {}
        for item in chosen:
            keys[item.path], new = blobs.copy_in(item.entry.storage_key, item.entry.sha256, item.entry.path)
            if new:
                created.append(keys[item.path])
        with transaction.atomic():
            return _record(by, submission, name, dataset, task, label, visibility, final_card, chosen, keys,
                           metrics=metrics, metrics_source=metrics_source, image_digest=image_digest,
                           fingerprint=fingerprint)  # fmt: skip
    except BaseException:
        _forget(created)
        raise


def _forget(created: list[str]) -> None:
    """Delete the blobs a failed registration wrote, unless a committed file refers to one (the
    same bytes registered by someone else meanwhile). A failure here leaves orphans for the sweep."""
    try:
        referenced = set(ModelFile.objects.filter(storage_key__in=created).values_list("storage_key", flat=True))
        blobs.delete(key for key in created if key not in referenced)
    except Exception:
        log.exception("blobs of a failed registration were left for the sweep: %s", ", ".join(created))


def _record(by, submission, name, dataset, task, label, visibility, card, chosen, keys, **facts) -> ModelVersion:
    try:
        with transaction.atomic():  # a racing first registration of the same name loses here
            model, made = RegisteredModel.objects.get_or_create(
                name=name,
                defaults={"owner": by, "dataset": dataset, "task": task, "visibility": visibility or "private"},
            )
    except IntegrityError as exc:
        raise Conflict(f"{name} was registered by someone else a moment ago; choose another name.") from exc
    model = RegisteredModel.objects.select_for_update().get(pk=model.pk)  # numbers versions one at a time
    if not (made or by.is_staff or by.pk == model.owner_id):
        raise Conflict(f"The name {name} belongs to another researcher's model; choose another <dataset>-<task> name.")
    if label and model.versions.filter(label=label).exists():
        raise Conflict(f"{name} already has a version labelled {label}; choose another label.")
    if visibility is not None and not made and visibility != model.visibility:
        RegisteredModel.objects.filter(pk=model.pk).update(visibility=visibility)
        model.visibility = visibility
    number = (model.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = ModelVersion.objects.create(
        model=model,
        number=number,
        label=label,
        card=card,
        metrics=facts["metrics"],
        metrics_source=facts["metrics_source"],
        submission=submission,
        image_digest=facts["image_digest"],
        dataset_fingerprint=facts["fingerprint"],
        created_by=by,
    )
    ModelFile.objects.bulk_create(
        ModelFile(
            version=version,
            path=item.path,
            source_path=item.entry.path,
            size=item.entry.size,
            sha256=item.entry.sha256,
            kind=item.entry.kind,
            storage_key=keys[item.path],
        )
        for item in chosen
    )
    if not model.aliases.filter(name=ModelAlias.DEFAULT).exists():
        ModelAlias.objects.create(model=model, name=ModelAlias.DEFAULT, version=version)
    files = ", ".join(item.entry.path for item in chosen)
    _event(
        model,
        A.REGISTERED,
        by=by,
        version=version,
        comment=f"version {number} from submission {submission.pk}: {files}"[:5000],
    )
    return version


def _live_version(model: RegisteredModel, number) -> ModelVersion:
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidRequest(f"version is a version number (an integer), not {number!r}.")
    version = model.versions.filter(number=number).first() if 0 < number < 2**31 else None
    if version is None:
        raise NotFound(f"{model.name} has no version {number}.")
    if not version.is_live:
        raise Conflict(f"{model.name} version {number} is retired; point aliases at a registered version.")
    return version


@transaction.atomic
def model_set_default(*, by, model: RegisteredModel, version: int) -> ModelAlias:
    """Make `version` the one that answers for the model, in one step."""
    return model_alias_set(by=by, model=model, alias=ModelAlias.DEFAULT, version=version)


@transaction.atomic
def model_alias_set(*, by, model: RegisteredModel, alias: str, version: int) -> ModelAlias:
    _ensure_manager(by, model)
    if not isinstance(alias, str) or not ALIAS.match(alias) or alias in RESERVED_ALIASES:
        raise InvalidRequest(
            f"Name the alias in lowercase letters, digits, '_' or '-', starting with a letter, other than "
            f"{' or '.join(RESERVED_ALIASES)} (got {alias!r})."
        )
    model = RegisteredModel.objects.select_for_update().get(pk=model.pk)
    target = _live_version(model, version)
    found, _ = ModelAlias.objects.update_or_create(model=model, name=alias, defaults={"version": target})
    action = A.DEFAULT_SET if alias == ModelAlias.DEFAULT else A.ALIAS_SET
    _event(model, action, by=by, version=target, comment=f"{alias} → {target.number}")
    return found


@transaction.atomic
def model_alias_delete(*, by, model: RegisteredModel, alias: str) -> None:
    _ensure_manager(by, model)
    if alias == ModelAlias.DEFAULT:
        raise Conflict("The default alias cannot be deleted; move it to another version with set-default.")
    found = model.aliases.select_for_update().filter(name=alias).first()
    if found is None:
        raise NotFound(f"{model.name} has no alias {alias!r}.")
    found.delete()
    _event(model, A.ALIAS_DELETED, by=by, version=found.version, comment=f"{alias} (was {found.version.number})")


@transaction.atomic
def model_version_retire(*, by, version_obj: ModelVersion, comment: str = "") -> ModelVersion:
    """Retire a version: nothing answers with it any more; its files and card stay for audit.
    The default version goes last: move the default first while other versions are registered."""
    model = RegisteredModel.objects.select_for_update().get(pk=version_obj.model_id)
    _ensure_manager(by, model)
    version = ModelVersion.objects.get(pk=version_obj.pk)
    if not version.is_live:
        raise Conflict(f"{model.name} version {version.number} is already retired.")
    is_default = model.aliases.filter(name=ModelAlias.DEFAULT, version=version).exists()
    others = model.versions.filter(state=V.REGISTERED).exclude(pk=version.pk)
    if is_default and others.exists():
        raise Conflict(
            f"Version {version.number} is the default of {model.name}; make another version the default "
            f"(registered: {', '.join(str(n) for n in others.values_list('number', flat=True))}) before retiring it."
        )
    if not transitions.move(version, V.RETIRED, expected=V.REGISTERED):
        raise Conflict(f"{model.name} version {version.number} was retired a moment ago.")
    dropped = list(
        model.aliases.filter(version=version).exclude(name=ModelAlias.DEFAULT).values_list("name", flat=True)
    )
    model.aliases.filter(name__in=dropped).delete()
    note = f"aliases removed: {', '.join(dropped)}" if dropped else ""
    _event(model, A.RETIRED, by=by, version=version, comment="; ".join(x for x in (comment.strip(), note) if x))
    version_obj.state = version.state
    return version


@transaction.atomic
def model_download_record(*, by, version: ModelVersion, file: ModelFile | None = None) -> ModelDownload:
    """Record that `by` took `file` of a version out of the store, or all its files when `file` is
    None. Called once the bytes are in hand, so a download the store could not serve leaves no row;
    one `by` may not make is refused as if the version did not exist, and leaves none either."""
    visible = selectors.visible_models(by).filter(pk=version.model_id).exists()
    if not (visible and browse.may_download(by, version)) or (file is not None and file.version_id != version.pk):
        raise NotFound(f"{version.model.name} has no version {version.number} you may download.")
    files = [file] if file is not None else list(version.files.all())
    return ModelDownload.objects.create(
        version=version,
        path=file.path if file is not None else "",
        files=len(files),
        bytes=sum(f.size for f in files),
        by=by,
    )


def model_blobs_sweep(*, older_than: timedelta = timedelta(days=1)) -> list[str]:
    """Delete blobs no model file refers to: left by a registration that crashed between copying
    and committing. Only blobs older than `older_than`, so a registration copying now keeps its own."""
    cutoff = timezone.now() - older_than
    referenced = set(ModelFile.objects.values_list("storage_key", flat=True))
    orphans = [key for key in blobs.stored_keys() if key not in referenced and blobs.modified_at(key) < cutoff]
    # Checked again just before deleting: a registration may have committed a file of it meanwhile.
    still = set(ModelFile.objects.filter(storage_key__in=orphans).values_list("storage_key", flat=True))
    gone = [key for key in orphans if key not in still]
    blobs.delete(gone)
    return gone
