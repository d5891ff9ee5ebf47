from django.contrib import admin

from .models import MailFailure, OutgoingMail


@admin.register(MailFailure)
class MailFailureAdmin(admin.ModelAdmin):
    list_display = ("at", "subject", "recipients", "error")
    readonly_fields = ("at", "subject", "recipients", "error")

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(OutgoingMail)
class OutgoingMailAdmin(admin.ModelAdmin):
    """Mails waiting to be sent: the mail server was down or refused them, or their sender died."""

    list_display = ("created_at", "subject", "recipients", "attempts", "due_at", "last_error")
    readonly_fields = ("created_at", "subject", "recipients", "attempts", "due_at", "last_error", "text")
    exclude = ("html", "claim")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
