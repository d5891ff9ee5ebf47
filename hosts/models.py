"""The hosts that run work: what each has (its slots), what it last said of itself (its
heartbeat and health), and whether an admin is draining it."""

from django.conf import settings
from django.db import models


class Host(models.Model):
    class SlotKind(models.TextChoices):
        CPU = "cpu", "CPU"
        GPU = "gpu", "GPU"

    name = models.CharField(max_length=100, unique=True)
    cpu_slots = models.PositiveSmallIntegerField(default=0)
    gpu_ids = models.JSONField(default=list, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    engine_ok = models.BooleanField(default=False)
    disk_free_bytes = models.BigIntegerField(null=True, blank=True)
    disk_path = models.CharField(max_length=500, blank=True)
    # Why the host takes no new work on its own account ('' when healthy): set at each heartbeat.
    problem = models.TextField(blank=True)
    draining = models.BooleanField(default=False)
    # Its serving agent's relay ('' when its workers are reached in the gateway's own folder): it
    # serves models, and wake-ups for its serving reconciler go to its own queue (serving_queue).
    serve_relay = models.CharField(max_length=300, blank=True)
    drain_requested_at = models.DateTimeField(null=True, blank=True)
    drain_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def healthy(self) -> bool:
        return not self.problem

    @property
    def slot_kind(self) -> str:
        return self.SlotKind.GPU if self.gpu_ids else self.SlotKind.CPU

    @property
    def slot_count(self) -> int:
        return len(self.gpu_ids) if self.gpu_ids else self.cpu_slots


class HostEvent(models.Model):
    """A host's audit trail: drains asked and lifted (by whom), health lost and regained."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    note = models.TextField()

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.host}: {self.note}"
