from django.db import migrations


class Migration(migrations.Migration):
    """MetricHistory belongs to submissions now (submissions 0007 takes it over): only the
    model state leaves this app; its table and rows stay where they are."""

    dependencies = [
        ("tracking", "0001_metric_history"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="MetricHistory")],
            database_operations=[],
        ),
    ]
