"""The model store: models registered from released exports, their numbered versions, the files of
each version (copied into the store by sha256), aliases, and the audit trails of changes and downloads."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class RegisteredModel(models.Model):
    """A named model (`<dataset>-<task>`); its `default` alias says which version answers for it."""

    class Visibility(models.TextChoices):
        PRIVATE = "private", "its owner and staff"
        APPROVED = "approved", "approved researchers"
        SIGNED_IN = "signed_in", "everyone signed in"

    name = models.CharField(max_length=100, unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="store_models")
    visibility = models.CharField(max_length=12, choices=Visibility.choices, default=Visibility.PRIVATE)
    dataset = models.CharField(max_length=100, db_index=True)
    task = models.CharField(max_length=100, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    class State(models.TextChoices):
        REGISTERED = "registered", "registered"
        RETIRED = "retired", "retired"

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    label = models.CharField(max_length=40, blank=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.REGISTERED, db_index=True)
    card = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    metrics_source = models.CharField(max_length=40, blank=True)
    submission = models.ForeignKey("submissions.Submission", on_delete=models.PROTECT, related_name="model_versions")
    image_digest = models.CharField(max_length=200, blank=True)
    dataset_fingerprint = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "number"]
        constraints = [
            models.UniqueConstraint(fields=["model", "number"], name="model_version_unique_number"),
            models.UniqueConstraint(
                fields=["model", "label"], condition=~Q(label=""), name="model_version_unique_label"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} {self.number}"

    @property
    def is_live(self) -> bool:
        return self.state == self.State.REGISTERED


class ModelFile(models.Model):
    """One file of a version: where it sits in the version, where it came from, and its blob."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="files")
    path = models.CharField(max_length=1000)  # inside the version (the registered folder stripped)
    source_path = models.CharField(max_length=1000)  # in the submission's release
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=32, blank=True)  # the type the airlock detected
    storage_key = models.CharField(max_length=200)  # content-addressed: blobs/sha256/<ab>/<hex>

    class Meta:
        ordering = ["version", "path"]
        constraints = [models.UniqueConstraint(fields=["version", "path"], name="model_file_unique_path")]

    def __str__(self) -> str:
        return self.path


class ModelAlias(models.Model):
    DEFAULT = "default"

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=40)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")

    class Meta:
        ordering = ["model", "name"]
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="model_alias_unique_name")]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.name}"


class ModelEvent(models.Model):
    """The audit trail of the store: who did what to which model or version, when, and why."""

    class Action(models.TextChoices):
        REGISTERED = "registered"
        DEFAULT_SET = "default_set", "default version set"
        ALIAS_SET = "alias_set", "alias set"
        ALIAS_DELETED = "alias_deleted", "alias deleted"
        RETIRED = "retired"
        MIGRATED = "migrated", "moved from the exports registry"

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="events")
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    action = models.CharField(max_length=20, choices=Action.choices, db_index=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    comment = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        who = self.by.get_username() if self.by_id else "the platform"
        return f"{self.get_action_display()} by {who}"


class ModelDownload(models.Model):
    """A version's files taken out of the store, one row per download: who, which, when, how many bytes."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="downloads")
    path = models.CharField(max_length=1000, blank=True)  # the file in the version; empty: all of them as a zip
    files = models.PositiveIntegerField()
    bytes = models.PositiveBigIntegerField()  # of the files as stored, before any zip
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        what = self.path or f"all {self.files} files"
        return f"{self.version} {what} by {self.by.get_username()}"
