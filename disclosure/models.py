from django.db import models


class DisclosureReport(models.Model):
    """What the platform measured of one exported model (a folder with the predict contract) or one
    tabular file, next to the data, before anyone decides on its release. Per-case scores are never
    kept: only the figures of the attacks and the counts of the table checks."""

    class Kind(models.TextChoices):
        MODEL = "model", "model"
        TABLE = "table", "table"

    class Verdict(models.TextChoices):
        PENDING = "pending", "being assessed"
        CLEAR = "clear", "no evidence of disclosure"
        OVER = "over", "over the threshold"
        UNASSESSED = "unassessed", "could not be assessed"
        NOT_APPLICABLE = "not_applicable", "no checks apply"

    submission = models.ForeignKey(
        "submissions.Submission", on_delete=models.CASCADE, related_name="disclosure_reports"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    path = models.CharField(max_length=1000)  # a model's folder inside the export ("model/", "" = all of it) or a file
    verdict = models.CharField(max_length=16, choices=Verdict.choices, default=Verdict.PENDING, db_index=True)
    summary = models.TextField(blank=True)  # the verdict in plain words, for the reviewer
    attacks = models.JSONField(default=list)  # [{"attack", "auc", "auc_low", "auc_high", "advantage", "p_value"}]
    n_train = models.PositiveIntegerField(default=0)
    n_test = models.PositiveIntegerField(default=0)
    cells = models.PositiveIntegerField(default=0)
    small_cells = models.PositiveIntegerField(default=0)
    dominated_cells = models.PositiveIntegerField(default=0)
    min_count = models.PositiveIntegerField(default=0)
    problem = models.TextField(blank=True)  # why the model could not be assessed (its crash, hang, wrong answers)
    fault = models.TextField(blank=True)  # the platform failed: never the model's or the researcher's doing
    detail = models.TextField(blank=True)
    thresholds = models.JSONField(default=dict)  # the settings the verdict was judged against
    seconds = models.FloatField(default=0.0)
    requested_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)  # a job took it (a lease: see disclosure_claim)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "path"]
        constraints = [
            models.UniqueConstraint(fields=["submission", "kind", "path"], name="disclosure_report_unique_path")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.shown_path} of submission {self.submission_id}: {self.get_verdict_display()}"

    @property
    def shown_path(self) -> str:
        return self.path or "(the whole export)"

    @property
    def needs_second_admin(self) -> bool:
        """Over the threshold, not assessed, or not yet assessed: the release needs two admins and a reason."""
        return self.verdict in (self.Verdict.OVER, self.Verdict.UNASSESSED, self.Verdict.PENDING)

    def covers(self, path: str) -> bool:
        """Whether an export file at `path` is part of what this report judged."""
        if self.kind == self.Kind.TABLE:
            return path == self.path
        return path.startswith(self.path)

    @property
    def worst_attack(self) -> dict | None:
        return max(self.attacks, key=lambda a: a["auc"]) if self.attacks else None
