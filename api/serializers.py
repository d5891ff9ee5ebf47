"""The shapes the API answers with. They describe; the work is done by services and selectors."""

from rest_framework import serializers

from submissions.models import Submission


class SubmissionUploadSerializer(serializers.Serializer):
    archive = serializers.FileField(help_text="submission.zip: main.py and requirements.txt at its top")


class TimingsSerializer(serializers.Serializer):
    received = serializers.DateTimeField()
    build_start = serializers.DateTimeField(allow_null=True)
    build_end = serializers.DateTimeField(allow_null=True)
    run_start = serializers.DateTimeField(allow_null=True)
    run_end = serializers.DateTimeField(allow_null=True)


class ExportEntrySerializer(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()


class UnreleasedSerializer(serializers.Serializer):
    held = serializers.IntegerField(help_text="files waiting for review")
    held_bytes = serializers.IntegerField()
    flagged = serializers.IntegerField(help_text="of the held files, how many the reviewer is asked to look at twice")
    rejected = serializers.IntegerField()
    expired = serializers.IntegerField()


class ExitBudgetSerializer(serializers.Serializer):
    limit = serializers.IntegerField(help_text="bytes a day across all runs: tracking data sent plus run log tails")
    used = serializers.IntegerField(help_text="over the last 24 hours, running submissions' allowances included")
    remaining = serializers.IntegerField()


class SubmissionListItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    status = serializers.ChoiceField(choices=Submission.Status.choices)
    failure_stage = serializers.ChoiceField(choices=Submission.Stage.choices, allow_null=True)
    original_name = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True, help_text="when main.py started (its last start)")
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.FloatField(help_text="upload to end, or to now while not finished")
    run_seconds = serializers.FloatField(allow_null=True, help_text="how long main.py ran, or has been running")
    metrics = serializers.DictField(child=serializers.FloatField())
    queue_position = serializers.IntegerField(allow_null=True)
    estimated_wait_seconds = serializers.IntegerField(allow_null=True)


class EventSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Submission.Status.choices)
    at = serializers.DateTimeField()
    note = serializers.CharField(allow_blank=True)


class SubmissionDetailSerializer(serializers.Serializer):
    """The object `manage.py submit --json` prints, with where it waits and a link to its page."""

    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Submission.Status.choices)
    contents_sha256 = serializers.CharField(
        help_text="sha256 of the files in the uploaded zip as the platform keeps them, not of the zip itself "
        "(the same files give the same value); `python3 submissions/intake.py ZIP` prints it"
    )
    failure_stage = serializers.ChoiceField(choices=Submission.Stage.choices, allow_null=True)
    reason = serializers.CharField(allow_null=True)
    exit_code = serializers.IntegerField(allow_null=True)
    log_tail = serializers.CharField(allow_blank=True)
    metrics = serializers.DictField(child=serializers.FloatField())
    exports = ExportEntrySerializer(many=True, help_text="released files only")
    exports_unreleased = UnreleasedSerializer(help_text="files not released: how many and how big, never which")
    exit_budget = ExitBudgetSerializer(help_text="what the owner may still get out unreviewed in the next 24 hours")
    warnings = serializers.ListField(child=serializers.CharField())
    duration_seconds = serializers.FloatField(help_text="upload to end, or to now while not finished")
    run_seconds = serializers.FloatField(allow_null=True, help_text="how long main.py ran, or has been running")
    timings = TimingsSerializer()
    events = EventSerializer(many=True, help_text="every change of state, oldest first")
    finished = serializers.BooleanField()
    queue_position = serializers.IntegerField(allow_null=True)
    estimated_wait_seconds = serializers.IntegerField(allow_null=True)
    page_url = serializers.URLField()


class LogSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["build", "run"])
    text = serializers.CharField(allow_blank=True)
    hidden_bytes = serializers.IntegerField(help_text="bytes before the shown tail that the log policy keeps back")
    note = serializers.CharField(allow_blank=True)


class LogsSerializer(serializers.Serializer):
    build = LogSerializer()
    run = LogSerializer()


class MetricPointSerializer(serializers.Serializer):
    step = serializers.IntegerField()
    value = serializers.FloatField()
    timestamp = serializers.IntegerField(help_text="milliseconds since the epoch")


class MetricsSerializer(serializers.Serializer):
    final = serializers.DictField(child=serializers.FloatField())
    history = serializers.DictField(child=MetricPointSerializer(many=True))
    history_available = serializers.BooleanField(help_text="false when MLflow could not be read just now")


class ExportFileSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    state = serializers.CharField()
    download_url = serializers.URLField(allow_null=True, help_text="signed and expiring; only for released files")


class ExportsSerializer(serializers.Serializer):
    status = serializers.CharField(allow_null=True, help_text="null when the run wrote nothing to /mnt/export")
    files = ExportFileSerializer(many=True, help_text="for the owner, released files only")
    unreleased = UnreleasedSerializer()
    release_zip_url = serializers.URLField(allow_null=True)
    link_expires_in_seconds = serializers.IntegerField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class FieldErrorsSerializer(serializers.Serializer):
    archive = serializers.ListField(child=serializers.CharField(), required=False)
    status = serializers.ListField(child=serializers.CharField(), required=False)
