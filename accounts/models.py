from django.conf import settings
from django.db import models

from . import crypto


class MailStep(models.TextChoices):
    """The steps of a submission a researcher may be e-mailed about."""

    RECEIVED = "received", "code received (with the check's warnings)"
    QUEUED = "queued", "queued for execution (with the place in the queue)"
    STARTED = "started", "execution started"
    ENDED = "ended", "execution finished, failed or timed out, or cancelled (with the metrics or the reason)"
    DECISIONS = "decisions", "an admin's decision on the files you asked to release"


def default_email_steps() -> list[str]:
    return [MailStep.RECEIVED, MailStep.ENDED, MailStep.DECISIONS]


class Researcher(models.Model):
    """A person allowed (once approved) to run code next to the data."""

    class Status(models.TextChoices):
        PENDING = "pending", "waiting for approval"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"
        DISABLED = "disabled", "disabled"

    class MlflowAccess(models.TextChoices):
        NONE = "none", "none"
        PENDING = "pending", "MLflow: pending"
        ACTIVE = "active", "active"
        REVOKING = "revoking", "MLflow: revocation pending"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="researcher")
    full_name = models.CharField(max_length=200, blank=True)
    institution = models.CharField(max_length=200, blank=True)
    intended_use = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    mlflow_username = models.CharField(max_length=150, unique=True, null=True, blank=True)
    mlflow_password_encrypted = models.TextField(blank=True)
    mlflow_experiment_id = models.CharField(max_length=64, blank=True)
    mlflow_provisioned_at = models.DateTimeField(null=True, blank=True)
    # Every change MLflow must learn of (approval, rotation, revocation) bumps the generation; the
    # sync records the generation it brought MLflow to. They differ while MLflow is behind.
    mlflow_generation = models.PositiveIntegerField(default=0)
    mlflow_synced_generation = models.PositiveIntegerField(default=0)
    # Which of their submissions' steps mail them (MailStep values); the researcher chooses.
    email_steps = models.JSONField(default=default_email_steps, blank=True)

    def __str__(self) -> str:
        return f"{self.display_name} ({self.get_status_display()})"

    @property
    def display_name(self) -> str:
        # Never the user name: sign-up made it up, the researcher did not choose it.
        return self.full_name or self.user.get_full_name() or self.user.email or self.user.get_username()

    def wants_mail(self, step: str) -> bool:
        return step in self.email_steps

    @property
    def is_approved(self) -> bool:
        return self.status == self.Status.APPROVED and self.user.is_active

    @property
    def mlflow_password(self) -> str:
        return crypto.decrypt(self.mlflow_password_encrypted) if self.mlflow_password_encrypted else ""

    @property
    def mlflow_experiment_name(self) -> str:
        return self.mlflow_username or ""

    @property
    def mlflow_in_sync(self) -> bool:
        return self.mlflow_generation == self.mlflow_synced_generation

    @property
    def mlflow_access(self) -> str:
        if self.status == self.Status.APPROVED:
            return self.MlflowAccess.ACTIVE if self.mlflow_in_sync else self.MlflowAccess.PENDING
        return self.MlflowAccess.NONE if self.mlflow_in_sync else self.MlflowAccess.REVOKING


class AccountEvent(models.Model):
    """The audit trail of an account: who did what to it, when, and why."""

    class Action(models.TextChoices):
        SIGNED_UP = "signed_up", "signed up"
        EMAIL_VERIFIED = "email_verified", "verified the e-mail address"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"
        DISABLED = "disabled", "disabled"
        MLFLOW_PROVISIONED = "mlflow_provisioned", "MLflow account set up"
        MLFLOW_REVOKED = "mlflow_revoked", "MLflow access removed"
        MLFLOW_PASSWORD_ROTATED = "mlflow_password_rotated", "MLflow password rotated"
        API_TOKEN_CREATED = "api_token_created", "API token created"
        API_TOKEN_REVOKED = "api_token_revoked", "API token revoked"

    researcher = models.ForeignKey(Researcher, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=32, choices=Action.choices)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        who = self.by.get_username() if self.by else "the platform"
        return f"{self.get_action_display()} by {who}"


class TokenScopes(models.Model):
    """What an API token may do. Reading and managing models are separate from submitting code, so
    a program that only reads the model store can be given a token that cannot change it."""

    READ_MODELS = "models:read"
    MANAGE_MODELS = "models:manage"
    PREDICT = "predict"  # reserved for the inference endpoints
    ALL = (READ_MODELS, MANAGE_MODELS, PREDICT)

    token = models.OneToOneField("authtoken.Token", on_delete=models.CASCADE, related_name="scopes")
    scopes = models.JSONField(default=list)

    def __str__(self) -> str:
        return ", ".join(self.scopes) or "no scope"
