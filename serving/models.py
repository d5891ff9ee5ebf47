"""Deployments of model versions, their sealed worker containers, and one audit row per request."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Deployment(models.Model):
    """How many workers a version should have. The reconciler makes the containers follow it.

    A worker that fails to start is retried after a pause that doubles with each failure in a row
    (`next_start_at`); after M2D_SERVE_DEGRADED_AFTER of them the deployment is `degraded` (its
    owner and the admins get one mail) until a worker is ready again."""

    class State(models.TextChoices):
        OK = "ok"
        DEGRADED = "degraded"

    version = models.OneToOneField("modelstore.ModelVersion", on_delete=models.PROTECT, related_name="deployment")
    min_workers = models.PositiveSmallIntegerField(default=0)
    max_workers = models.PositiveSmallIntegerField(default=0)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)
    last_cold_start_seconds = models.FloatField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OK)
    failures_in_a_row = models.PositiveIntegerField(default=0)
    next_start_at = models.DateTimeField(null=True, blank=True)
    # Each worker holds one GPU of its host, taken from the run slots (M2D_GPU_IDS) like a run.
    gpu = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"deployment of {self.version}"


class ServeWorker(models.Model):
    class State(models.TextChoices):
        STARTING = "starting"
        READY = "ready"
        FAILED = "failed"
        STOPPED = "stopped"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="workers")
    state = models.CharField(max_length=10, choices=State.choices, default=State.STARTING, db_index=True)
    host = models.CharField(max_length=100, blank=True, db_index=True)  # whose engine runs it (M2D_HOST_NAME)
    container = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    # The run slot a GPU worker holds while it lives ("host/gpu1"), and that GPU's id; '' on CPUs.
    slot = models.CharField(max_length=128, blank=True, db_index=True)
    gpu_id = models.CharField(max_length=32, blank=True)
    # Its host's serving relay (M2D_SERVE_RELAY_URL there) when the gateway reaches it across hosts;
    # '' when its socket is reached in the serving folder the gateway shares.
    relay = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["slot"],
                condition=Q(state__in=["starting", "ready"]) & ~Q(slot=""),
                name="serve_worker_one_per_slot",
            )
        ]

    def __str__(self) -> str:
        return f"worker {self.pk} ({self.state})"


class Prediction(models.Model):
    """One request to a model, answered or refused. Inputs are kept as names, sizes and hashes."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    model_name = models.CharField(max_length=100, db_index=True)
    version = models.ForeignKey("modelstore.ModelVersion", null=True, on_delete=models.PROTECT, related_name="+")
    endpoint = models.CharField(max_length=20)
    inputs = models.JSONField(default=list)
    status = models.PositiveSmallIntegerField()
    outputs = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    worker = models.ForeignKey(ServeWorker, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_seconds = models.FloatField(null=True, blank=True)
    total_seconds = models.FloatField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"prediction {self.uuid} {self.status}"


class DeploymentEvent(models.Model):
    """Who asked a deployment for how many workers, and what the platform did about its workers."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    comment = models.TextField()

    class Meta:
        ordering = ["at", "id"]


from .batch_models import BatchCase, BatchJob  # noqa: E402, F401 - batch jobs, in a file of their own
