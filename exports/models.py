from django.conf import settings
from django.db import models
from django.template.defaultfilters import pluralize


class Export(models.Model):
    """What a run wrote to /mnt/export, kept until an admin releases it (or it expires)."""

    class Status(models.TextChoices):
        HELD = "held", "kept for review"
        REQUESTED = "requested", "release requested"
        REVIEWED = "reviewed", "reviewed"
        EXPIRED = "expired", "expired"

    submission = models.OneToOneField("submissions.Submission", on_delete=models.CASCADE, related_name="export")
    folder = models.CharField(max_length=500)
    files = models.JSONField(default=list)  # [{"path", "size", "sha256"}] as written by the run, sorted by path
    total_bytes = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.HELD, db_index=True)
    justification = models.TextField(blank=True)
    requested_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    expiry_warned_at = models.DateTimeField(null=True, blank=True)
    dataset_fingerprint = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"export of submission {self.submission_id} ({len(self.files)} file{pluralize(len(self.files))})"


class ExportFile(models.Model):
    """One file of an export: its manifest entry, what the reviewer must notice, and its fate."""

    class Source(models.TextChoices):
        RUN = "run", "written by the run"
        LOG = "log", "platform log"

    class State(models.TextChoices):
        HELD = "held", "held"
        RELEASED = "released", "released"
        REJECTED = "rejected", "rejected"
        EXPIRED = "expired", "expired"

    class Flag(models.TextChoices):
        DATASET_COPY = "dataset_copy", "identical to a data set file"
        IMAGE = "image", "image (possible patient image)"
        ARRAY = "array", "array (possible patient image)"
        LARGE = "large", "large file"
        ARCHIVE = "archive", "archive (contents not reviewed one by one)"
        PICKLE = "pickle", "pickled Python objects"

    export = models.ForeignKey(Export, on_delete=models.CASCADE, related_name="entries")
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.RUN)
    path = models.CharField(max_length=1000)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    kind = models.CharField(max_length=32)  # detected type: text, csv, image, array, pytorch, archive, ...
    flags = models.JSONField(default=list)
    dataset_matches = models.JSONField(default=list)  # data set paths with the same bytes
    preview = models.JSONField(default=dict)
    storage_key = models.CharField(max_length=1100)
    state = models.CharField(max_length=10, choices=State.choices, default=State.HELD, db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["source", "path"]
        constraints = [models.UniqueConstraint(fields=["export", "source", "path"], name="export_file_unique_path")]

    def __str__(self) -> str:
        return self.display_path

    @property
    def display_path(self) -> str:
        return f"platform-logs/{self.path}" if self.source == self.Source.LOG else self.path

    def flag_labels(self) -> list[str]:
        return [self.Flag(flag).label for flag in self.flags]


class ExportEvent(models.Model):
    """The audit trail of the airlock: who did what, when, to which export or file."""

    class Action(models.TextChoices):
        COLLECTED = "collected"
        REQUESTED = "requested"
        CANCELLED = "cancelled", "request cancelled"
        LOG_ATTACHED = "log_attached", "log attached"
        APPROVED = "approved", "release approved"
        RELEASED = "released"
        REJECTED = "rejected"
        DOWNLOADED = "downloaded"
        EXPIRY_WARNED = "expiry_warned", "expiry warning sent"
        EXPIRED = "expired"
        LOG_READ = "log_read", "full log read"
        PROVENANCE_READ = "provenance_read", "provenance downloaded"
        MODEL_REGISTERED = "model_registered", "model registered"
        DISCLOSURE_AGAIN = "disclosure_again", "disclosure risk assessed again"

    DECISIONS = (Action.APPROVED, Action.RELEASED, Action.REJECTED)

    submission = models.ForeignKey("submissions.Submission", on_delete=models.CASCADE, related_name="export_events")
    file = models.ForeignKey(ExportFile, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    path = models.CharField(max_length=1000, blank=True)  # kept when the file row goes
    action = models.CharField(max_length=20, choices=Action.choices, db_index=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    comment = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        who = self.by.username if self.by_id else "the platform"
        return f"{self.get_action_display()} by {who}" + (f": {self.path}" if self.path else "")


class Provenance(models.Model):
    """Facts about a run that are gone once its image is removed: captured at the end of the run."""

    submission = models.OneToOneField("submissions.Submission", on_delete=models.CASCADE, related_name="provenance")
    image = models.JSONField(default=dict)  # {"id", "repo_digests", "layers"}
    base_image = models.JSONField(default=dict)  # {"name", "id", "repo_digests"}
    runtime_image = models.JSONField(default=dict)  # {"name", "id", "repo_digests", "is_parent"}
    submission_freeze = models.TextField(blank=True)
    runtime_freeze = models.TextField(blank=True)
    gpus = models.JSONField(default=list)
    dataset_fingerprint = models.CharField(max_length=64, blank=True)
    captured_at = models.DateTimeField(auto_now_add=True)
    problems = models.JSONField(default=list)  # what could not be captured, and why

    def __str__(self) -> str:
        return f"provenance of submission {self.submission_id}"
