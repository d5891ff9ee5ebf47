from django.contrib import admin

from .models import MailFailure


@admin.register(MailFailure)
class MailFailureAdmin(admin.ModelAdmin):
    list_display = ("at", "subject", "recipients", "error")
    readonly_fields = ("at", "subject", "recipients", "error")

    def has_add_permission(self, request) -> bool:
        return False
