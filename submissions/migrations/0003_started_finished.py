from django.db import migrations, models

FINISHED = ("succeeded", "failed", "cancelled", "timed_out")


def from_events(apps, schema_editor):
    """Submissions made before these fields existed take their times from their timelines."""
    Submission = apps.get_model("submissions", "Submission")
    SubmissionEvent = apps.get_model("submissions", "SubmissionEvent")
    started = dict(
        SubmissionEvent.objects.filter(to_status="running").order_by("at", "id").values_list("submission_id", "at")
    )
    finished = dict(
        SubmissionEvent.objects.filter(to_status__in=FINISHED).order_by("at", "id").values_list("submission_id", "at")
    )
    for pk in set(started) | set(finished):
        Submission.objects.filter(pk=pk).update(started_at=started.get(pk), finished_at=finished.get(pk))


class Migration(migrations.Migration):
    dependencies = [("submissions", "0002_run_slots")]

    operations = [
        migrations.AddField(
            model_name="submission", name="started_at", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.AddField(
            model_name="submission", name="finished_at", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.RunPython(from_events, migrations.RunPython.noop),
    ]
