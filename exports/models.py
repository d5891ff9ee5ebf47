from django.db import models


class Export(models.Model):
    """What a run wrote to /mnt/export, kept on the host until an admin releases it."""

    submission = models.OneToOneField("submissions.Submission", on_delete=models.CASCADE, related_name="export")
    folder = models.CharField(max_length=500)
    files = models.JSONField(default=list)  # [{"path", "size", "sha256"}], sorted by path
    total_bytes = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"export of submission {self.submission_id} ({len(self.files)} files)"
