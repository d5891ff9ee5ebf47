"""Read-only views of the airlock in the admin site: decisions go through the review page."""

from django.contrib import admin

from .models import Export, ExportEvent, ExportFile, Provenance


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ExportFileInline(admin.TabularInline):
    model = ExportFile
    fields = ("display_path", "size", "kind", "flags", "state", "sha256")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Export)
class ExportAdmin(ReadOnly):
    list_display = ("submission", "status", "total_bytes", "requested_at", "expires_at")
    list_filter = ("status",)
    inlines = [ExportFileInline]


@admin.register(ExportEvent)
class ExportEventAdmin(ReadOnly):
    list_display = ("at", "submission", "action", "by", "path", "comment")
    list_filter = ("action",)
    search_fields = ("submission__id", "by__username", "path")


@admin.register(Provenance)
class ProvenanceAdmin(ReadOnly):
    list_display = ("submission", "captured_at", "dataset_fingerprint")
