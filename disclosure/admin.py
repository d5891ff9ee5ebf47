"""Disclosure reports in the admin site, read-only: the runner's facts are recorded by the services,
and releases are decided on the review page."""

from django.contrib import admin

from .models import DisclosureReport


@admin.register(DisclosureReport)
class DisclosureReportAdmin(admin.ModelAdmin):
    list_display = ("submission", "kind", "path", "verdict", "n_train", "n_test", "seconds", "finished_at")
    list_filter = ("verdict", "kind")
    search_fields = ("submission__id", "path")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
