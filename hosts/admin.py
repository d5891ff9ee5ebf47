from django.contrib import admin, messages

from .models import Host, HostEvent
from .services import host_drain, host_undrain


class HostEventInline(admin.TabularInline):
    model = HostEvent
    extra = 0
    readonly_fields = ("at", "by", "note")
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    """Hosts register themselves by their heartbeat; an admin only drains them and lifts a drain."""

    list_display = ("name", "slot_kind", "slot_count", "heartbeat_at", "healthy", "problem", "draining")
    list_filter = ("draining",)
    readonly_fields = [f.name for f in Host._meta.fields]
    inlines = [HostEventInline]
    actions = ["drain", "undrain"]

    def has_add_permission(self, request):
        return False

    @admin.display(boolean=True)
    def healthy(self, host: Host) -> bool:
        return host.healthy

    @admin.action(description="Drain: take no new work; what runs there finishes")
    def drain(self, request, queryset):
        names = [host.name for host in queryset if host_drain(by=request.user, host=host)]
        message = f"Draining {', '.join(names)}." if names else "Those hosts were draining already."
        self.message_user(request, message, messages.INFO)

    @admin.action(description="Lift the drain: take new work again")
    def undrain(self, request, queryset):
        names = [host.name for host in queryset if host_undrain(by=request.user, host=host)]
        takes = "takes" if len(names) == 1 else "take"
        message = (
            f"Drain lifted: {', '.join(names)} {takes} work again." if names else "None of those hosts was draining."
        )
        self.message_user(request, message, messages.INFO)
