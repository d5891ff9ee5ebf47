"""Batch jobs: a zip of cases sent through the inference gateway one by one, and each case's
answer or error."""

import uuid

from django.conf import settings
from django.db import models


class BatchJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"  # every case was asked; each has outputs or its own error
        FAILED = "failed"  # the job stopped: the cases not asked are kept as not run

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    version = models.ForeignKey("modelstore.ModelVersion", on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    archive = models.FileField(upload_to="batch-jobs/", blank=True)  # emptied when the job ends
    archive_sha256 = models.CharField(max_length=64)
    total = models.PositiveIntegerField()
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"batch job {self.uuid} ({self.status})"


class BatchCase(models.Model):
    """One case of a job: which zip members are its inputs, and once asked, the answer."""

    job = models.ForeignKey(BatchJob, on_delete=models.CASCADE, related_name="cases")
    index = models.PositiveIntegerField()
    name = models.CharField(max_length=255)
    members = models.JSONField()  # input name -> member name in the zip
    status = models.PositiveSmallIntegerField(null=True, blank=True)  # the HTTP status /predictions would answer
    outputs = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    prediction = models.UUIDField(null=True, blank=True)  # the audit row (serving.models.Prediction)

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="batch_case_index_unique")]

    def __str__(self) -> str:
        return f"case {self.name} of {self.job_id}"
