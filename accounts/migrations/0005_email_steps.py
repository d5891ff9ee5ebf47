from django.db import migrations, models

import accounts.models

EVERY_STEP = ["received", "queued", "started", "ended", "decisions"]
ENDS_ONLY = ["ended", "decisions"]


def from_every_step(apps, schema_editor):
    # Each researcher keeps the e-mails they got before: every step, or only the ends.
    Researcher = apps.get_model("accounts", "Researcher")
    Researcher.objects.filter(email_every_step=True).update(email_steps=EVERY_STEP)
    Researcher.objects.filter(email_every_step=False).update(email_steps=ENDS_ONLY)


def to_every_step(apps, schema_editor):
    Researcher = apps.get_model("accounts", "Researcher")
    for researcher in Researcher.objects.all():
        researcher.email_every_step = "queued" in researcher.email_steps
        researcher.save(update_fields=["email_every_step"])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_token_scopes"),
    ]

    operations = [
        migrations.AddField(
            model_name="researcher",
            name="email_steps",
            field=models.JSONField(blank=True, default=accounts.models.default_email_steps),
        ),
        migrations.RunPython(from_every_step, to_every_step),
        migrations.RemoveField(model_name="researcher", name="email_every_step"),
    ]
