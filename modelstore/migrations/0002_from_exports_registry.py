"""Move the models registered in the exports app (exports.RegisteredModel) into the store.

Each old row becomes one version of a store model; nothing is dropped:
- names are normalised to `<dataset>-<task>`: lowercased, every run of characters other than
  a-z and 0-9 turned into one hyphen, hyphens trimmed, cut to 100 characters; a name without a
  hyphen is prefixed with `clam-` (the platform's data set), an empty one becomes `clam-model`;
- old names were unique per owner, store names are global: the first owner (oldest
  registration) keeps the name, another owner's rows get `-<their username, normalised>` added
  (and `-2`, `-3`... should that be taken too);
- an owner's rows that normalise to the same name become versions 1, 2... of one model in the
  order they were registered; the old version string is kept as the label (with `-<old id>`
  added where two would be equal);
- the card is the old description as `summary`, "research use only" as intended use, and the
  metrics snapshot; visibility is private; the first version is the default;
- the file's bytes are copied from export storage into the store by sha256 and checked; a file
  whose bytes are gone or differ is recorded without a blob, and its `migrated` audit event says so.
"""

import hashlib
import re
import tempfile

from django.core.files import File
from django.core.files.storage import storages
from django.db import migrations

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,39}$")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def store_name(old: str) -> str:
    name = slug(old)[:100].strip("-") or "model"
    if "-" not in name:
        name = f"clam-{name}"[:100].strip("-")
    return name


def with_suffix(base: str, suffix: str) -> str:
    return f"{base[: 99 - len(suffix)].strip('-')}-{suffix}"


def copy_blob(storage_key: str, sha256: str) -> tuple[str, str]:
    """The store key of the file's bytes, or "" and why not."""
    try:
        with storages["exports"].open(storage_key, "rb") as source, tempfile.TemporaryFile() as scratch:
            digest = hashlib.sha256()
            for block in iter(lambda: source.read(1024 * 1024), b""):
                digest.update(block)
                scratch.write(block)
            if digest.hexdigest() != sha256:
                return "", f"the bytes in export storage are not the registered ones (sha256 {digest.hexdigest()})"
            key = f"blobs/sha256/{sha256[:2]}/{sha256}"
            target = storages["models"]
            if not target.exists(key):
                scratch.seek(0)
                saved = target.save(key, File(scratch, name=sha256))
                if saved != key:
                    target.delete(saved)
                    return "", f"the model store saved the file as {saved!r}"
            return key, ""
    except OSError as exc:
        return "", f"the file could not be read from export storage ({exc})"


def forward(apps, schema_editor):
    Old = apps.get_model("exports", "RegisteredModel")
    Provenance = apps.get_model("exports", "Provenance")
    Model = apps.get_model("modelstore", "RegisteredModel")
    Version = apps.get_model("modelstore", "ModelVersion")
    ModelFile = apps.get_model("modelstore", "ModelFile")
    Alias = apps.get_model("modelstore", "ModelAlias")
    Event = apps.get_model("modelstore", "ModelEvent")
    owner_of = dict(Model.objects.values_list("name", "owner_id"))
    chosen: dict[tuple[int, str], str] = {}  # (owner, old name) -> store name
    for old in Old.objects.select_related("owner", "file", "submission").order_by("created_at", "pk"):
        name = chosen.get((old.owner_id, old.name))
        if name is None:
            name = base = store_name(old.name)
            if owner_of.get(name, old.owner_id) != old.owner_id:
                name = base = with_suffix(base, slug(old.owner.username) or str(old.owner_id))
                n = 2
                while owner_of.get(name, old.owner_id) != old.owner_id:
                    name, n = with_suffix(base, str(n)), n + 1
            chosen[(old.owner_id, old.name)] = name
        dataset, task = name.split("-", 1)
        model, made = Model.objects.get_or_create(
            name=name, defaults={"owner_id": old.owner_id, "dataset": dataset, "task": task, "visibility": "private"}
        )
        owner_of[name] = model.owner_id
        label = old.version if LABEL.match(old.version or "") else slug(old.version or "")[:40]
        if label and Version.objects.filter(model=model, label=label).exists():
            label = f"{label[: 39 - len(str(old.pk))]}-{old.pk}"
        number = Version.objects.filter(model=model).count() + 1
        provenance = Provenance.objects.filter(submission_id=old.submission_id).first()
        card = {"intended_use": "research use only", "metrics": old.metrics}
        if old.description:
            card["summary"] = old.description[:2000]
        version = Version.objects.create(
            model=model,
            number=number,
            label=label,
            state="registered",
            card=card,
            metrics=old.metrics,
            metrics_source=old.metrics_source,
            submission_id=old.submission_id,
            image_digest=(old.submission.image_id or "")[:200],
            dataset_fingerprint=provenance.dataset_fingerprint if provenance else "",
            created_by_id=old.owner_id,
        )
        Version.objects.filter(pk=version.pk).update(created_at=old.created_at)
        if made:
            Model.objects.filter(pk=model.pk).update(created_at=old.created_at)
            Alias.objects.create(model=model, name="default", version=version)
        key, problem = copy_blob(old.file.storage_key, old.file_sha256)
        ModelFile.objects.create(
            version=version,
            path=old.file_path,
            source_path=old.file_path,
            size=old.file_size,
            sha256=old.file_sha256,
            kind=old.format,
            storage_key=key,
        )
        comment = f"exports model {old.pk}: {old.name!r} version {old.version!r}"
        Event.objects.create(
            model=model, version=version, action="migrated", by_id=None, comment=comment + (f"; {problem}" if problem else "")
        )


class Migration(migrations.Migration):
    dependencies = [
        ("modelstore", "0001_store"),
        ("exports", "0002_airlock"),
    ]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
