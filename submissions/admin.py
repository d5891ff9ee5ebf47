from django.contrib import admin

from .models import Submission, SubmissionEvent


class EventInline(admin.TabularInline):
    model = SubmissionEvent
    extra = 0
    readonly_fields = ("from_status", "to_status", "at", "note")
    can_delete = False


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "owner",
        "status",
        "failure_stage",
        "slot",
        "tracking_bytes",
        "tracking_bytes_received",
        "created_at",
    )
    list_filter = ("status", "failure_stage")
    search_fields = ("owner__username", "archive_sha256")
    readonly_fields = [f.name for f in Submission._meta.fields]
    inlines = [EventInline]
