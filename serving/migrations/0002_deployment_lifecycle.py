from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("serving", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="deployment",
            name="failures_in_a_row",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="deployment",
            name="next_start_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="deployment",
            name="state",
            field=models.CharField(choices=[("ok", "Ok"), ("degraded", "Degraded")], default="ok", max_length=10),
        ),
    ]
