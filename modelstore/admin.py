"""The store in the admin site, read-only: changes go through the services (API, pages)."""

from django.contrib import admin

from exports.admin import ReadOnly

from .models import ModelDownload, ModelEvent, ModelFile, ModelVersion, RegisteredModel


class FileInline(admin.TabularInline):
    model = ModelFile
    fields = ("path", "source_path", "size", "sha256", "kind")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(RegisteredModel)
class RegisteredModelAdmin(ReadOnly):
    list_display = ("name", "owner", "visibility", "dataset", "task", "created_at")
    list_filter = ("visibility", "dataset")
    search_fields = ("name", "owner__username")


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnly):
    list_display = ("model", "number", "label", "state", "submission", "created_by", "created_at")
    list_filter = ("state",)
    inlines = [FileInline]


@admin.register(ModelEvent)
class ModelEventAdmin(ReadOnly):
    list_display = ("at", "model", "version", "action", "by", "comment")
    list_filter = ("action",)


@admin.register(ModelDownload)
class ModelDownloadAdmin(ReadOnly):
    list_display = ("at", "by", "version", "what", "files", "bytes")
    list_filter = ("version__model",)
    search_fields = ("by__username", "by__email", "version__model__name", "path")
    date_hierarchy = "at"
    list_select_related = ("by", "version__model")

    @admin.display(description="file")
    def what(self, download: ModelDownload) -> str:
        return download.path or "all files (zip)"
