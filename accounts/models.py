from django.conf import settings
from django.db import models

from . import crypto


class Researcher(models.Model):
    """A person allowed (once approved) to run code next to the data."""

    class Status(models.TextChoices):
        PENDING = "pending", "waiting for approval"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"
        DISABLED = "disabled", "disabled"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="researcher")
    institution = models.CharField(max_length=200, blank=True)
    intended_use = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    mlflow_username = models.CharField(max_length=150, unique=True, null=True, blank=True)
    mlflow_password_encrypted = models.TextField(blank=True)
    mlflow_experiment_id = models.CharField(max_length=64, blank=True)
    mlflow_provisioned_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user.username} ({self.get_status_display()})"

    @property
    def is_approved(self) -> bool:
        return self.status == self.Status.APPROVED and self.user.is_active

    @property
    def mlflow_password(self) -> str:
        return crypto.decrypt(self.mlflow_password_encrypted) if self.mlflow_password_encrypted else ""

    @property
    def mlflow_experiment_name(self) -> str:
        return self.mlflow_username or ""
