from django.db import models


class MetricHistory(models.Model):
    """A finished submission's metrics per step, read back from MLflow once its run has ended
    (nothing can log to it after that: its tracking gateway is closed), so that its page, the API
    and the e-mail never need to ask MLflow again."""

    submission = models.OneToOneField(
        "submissions.Submission", on_delete=models.CASCADE, primary_key=True, related_name="metric_record"
    )
    # {metric: [{"step", "value", "timestamp"}]}, at most MAX_POINTS per metric (see readback)
    history = models.JSONField(default=dict)
    thinned = models.BooleanField(default=False, help_text="some metric had more points than are kept")
    read_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "metric histories"

    def __str__(self) -> str:
        return f"metric history of submission {self.submission_id}"
