from django.conf import settings
from django.db import models
from django.utils import timezone


class Submission(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "received"
        BUILDING = "building"
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        TIMED_OUT = "timed_out", "timed out"

    class Stage(models.TextChoices):
        VALIDATION = "validation"
        BUILD = "build"
        RUN = "run"
        EXPORT = "export"  # what the run left in /mnt/export broke the export limits
        INFRASTRUCTURE = "infrastructure"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT)

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="submissions")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED, db_index=True)
    failure_stage = models.CharField(max_length=16, choices=Stage.choices, blank=True)
    reason = models.TextField(blank=True)
    archive = models.FileField(upload_to="submissions/")
    archive_sha256 = models.CharField(max_length=64)
    original_name = models.CharField(max_length=255, blank=True)
    requirements = models.TextField(blank=True)
    warnings = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Set by the transitions: the start of the (last) run, and the end of the submission.
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    image_id = models.CharField(max_length=128, blank=True)
    build_log_tail = models.TextField(blank=True)
    run_log_tail = models.TextField(blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    oom_killed = models.BooleanField(default=False)  # the engine said so: the run met its memory limit
    slot = models.CharField(max_length=128, blank=True, db_index=True)
    gpu_id = models.CharField(max_length=32, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    tracking_calls = models.PositiveIntegerField(default=0)
    tracking_bytes = models.PositiveBigIntegerField(default=0)  # sent out by the run, over all its attempts
    tracking_bytes_received = models.PositiveBigIntegerField(default=0)  # answers into the run, all attempts
    infrastructure_retries = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # A slot's claim counts each queued owner's running jobs: with this, a lookup per owner
            # instead of a pass over all their submissions (a 1,000-job queue: 54 ms -> ms a claim).
            models.Index(fields=["status", "owner"], name="submission_status_owner"),
        ]

    def __str__(self) -> str:
        return f"submission {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    def total_seconds(self, now=None) -> float:
        """From upload to its end, or to now while it is not finished."""
        end = self.finished_at or now or timezone.now()
        return max(0.0, (end - self.created_at).total_seconds())

    def run_seconds(self, now=None) -> float | None:
        """How long main.py ran (or has been running); None when it never started."""
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at and self.finished_at >= self.started_at else None
        if end is None and self.status != self.Status.RUNNING:
            return None  # requeued after the platform lost its run
        return max(0.0, ((end or now or timezone.now()) - self.started_at).total_seconds())


class SubmissionEvent(models.Model):
    """One row per state change: the submission's timeline and audit trail."""

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    at = models.DateTimeField(auto_now_add=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]


class ExitCharge(models.Model):
    """Bytes a researcher got out of one submission through one metered channel, unreviewed.

    The sum over a researcher's charges of the last M2D_EXIT_BUDGET_HOURS is what their budget
    M2D_EXIT_BYTES_PER_RESEARCHER has paid; a running submission's tracking charge is what it has
    reserved, settled to what it used when the run ends."""

    class Channel(models.TextChoices):
        TRACKING = "tracking", "MLflow through the tracking gateway"
        LOG = "log", "run log tail"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="exit_charges")
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="exit_charges")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    bytes = models.PositiveBigIntegerField(default=0)
    reserved = models.BooleanField(default=False)  # a running submission's allowance, not yet settled
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["submission", "channel"], name="exit_charge_per_channel")]
        indexes = [models.Index(fields=["owner", "at"], name="exit_charge_owner_at")]

    def __str__(self) -> str:
        return f"{self.bytes} bytes of submission {self.submission_id} by {self.channel}"


class MetricHistory(models.Model):
    """A finished submission's metrics per step, read back from MLflow once its run has ended
    (nothing can log to it after that: its tracking gateway is closed), so that its page, the API
    and the e-mail never need to ask MLflow again."""

    submission = models.OneToOneField(
        Submission, on_delete=models.CASCADE, primary_key=True, related_name="metric_record"
    )
    # {metric: [{"step", "value", "timestamp"}]}, at most MAX_POINTS per metric (tracking.readback)
    history = models.JSONField(default=dict)
    thinned = models.BooleanField(default=False, help_text="some metric had more points than are kept")
    read_at = models.DateTimeField(auto_now=True)

    class Meta:
        # The table the tracking app first created: the model moved, its rows did not.
        db_table = "tracking_metrichistory"
        verbose_name_plural = "metric histories"

    def __str__(self) -> str:
        return f"metric history of submission {self.submission_id}"
