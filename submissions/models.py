from django.conf import settings
from django.db import models


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
    image_id = models.CharField(max_length=128, blank=True)
    build_log_tail = models.TextField(blank=True)
    run_log_tail = models.TextField(blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    slot = models.CharField(max_length=128, blank=True, db_index=True)
    gpu_id = models.CharField(max_length=32, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    tracking_calls = models.PositiveIntegerField(default=0)
    tracking_bytes = models.PositiveBigIntegerField(default=0)
    infrastructure_retries = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"submission {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class SubmissionEvent(models.Model):
    """One row per state change: the submission's timeline and audit trail."""

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    at = models.DateTimeField(auto_now_add=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]
