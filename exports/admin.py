from django.contrib import admin

from .models import Export


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ("submission", "total_bytes", "created_at")
    readonly_fields = ("submission", "folder", "files", "total_bytes", "created_at")
