import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """MetricHistory moves here from the tracking app, which knows MLflow and no submission. The
    table tracking 0001 created keeps its name and rows: only the model state moves."""

    dependencies = [
        ("submissions", "0006_oom_killed"),
        ("tracking", "0002_metric_history_to_submissions"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="MetricHistory",
                    fields=[
                        (
                            "submission",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                primary_key=True,
                                related_name="metric_record",
                                serialize=False,
                                to="submissions.submission",
                            ),
                        ),
                        ("history", models.JSONField(default=dict)),
                        (
                            "thinned",
                            models.BooleanField(default=False, help_text="some metric had more points than are kept"),
                        ),
                        ("read_at", models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        "verbose_name_plural": "metric histories",
                        "db_table": "tracking_metrichistory",
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
