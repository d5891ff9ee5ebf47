"""Where staff decide on researchers: one click per row, or in bulk; every decision through services."""

from allauth.account.decorators import secure_admin_login
from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, F, OuterRef, Q
from django.shortcuts import get_object_or_404, redirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import Truncator

from submissions import exits
from tracking.client import MlflowRefused, MlflowUnavailable

from .forms import DecisionReasonForm
from .models import AccountEvent, Researcher
from .services import AccountError, mlflow_retry, researcher_approve, researcher_disable, researcher_reject

# The admin signs people in through allauth as well, so its login cannot skip the second factor.
admin.site.login = secure_admin_login(admin.site.login)

S = Researcher.Status
M = Researcher.MlflowAccess
IN_SYNC = Q(mlflow_generation=F("mlflow_synced_generation"))
APPROVED = Q(status=S.APPROVED)
STATUS_COLOURS = {S.PENDING: "#8a5a00", S.APPROVED: "#1e7b3c", S.REJECTED: "#b3261e", S.DISABLED: "#5b6676"}


class MlflowAccessFilter(admin.SimpleListFilter):
    title = "MLflow"
    parameter_name = "mlflow"

    def lookups(self, request, model_admin):
        return M.choices

    def queryset(self, request, queryset):
        conditions = {
            M.PENDING: APPROVED & ~IN_SYNC,
            M.ACTIVE: APPROVED & IN_SYNC,
            M.REVOKING: ~APPROVED & ~IN_SYNC,
            M.NONE: ~APPROVED & IN_SYNC,
        }
        return queryset.filter(conditions[self.value()]) if self.value() in conditions else queryset


class AccountEventInline(admin.TabularInline):
    model = AccountEvent
    fields = readonly_fields = ("at", "action", "by", "reason")
    extra = 0
    can_delete = False
    verbose_name_plural = "history"

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Researcher)
class ResearcherAdmin(admin.ModelAdmin):
    list_display = ("researcher", "statement", "status_badge", "mlflow", "exit_bytes", "signed_up", "decide")
    list_filter = ("status", MlflowAccessFilter)
    list_select_related = ("user",)
    search_fields = ("full_name", "user__username", "user__email", "institution")
    ordering = ("-user__date_joined",)
    fields = readonly_fields = (
        "full_name",
        "user",
        "email",
        "institution",
        "intended_use",
        "status_badge",
        "decision",
        "mlflow",
        "decide",
    )
    inlines = [AccountEventInline]
    actions = ["approve_selected", "reject_selected", "disable_selected", "retry_mlflow"]

    def has_add_permission(self, request):
        return False  # researchers sign up, or an operator runs create_researcher

    def has_delete_permission(self, request, obj=None):
        return False  # disable instead: that revokes MLflow and keeps the history

    @admin.display(description="e-mail")
    def email(self, obj):
        verified = "verified" if getattr(obj, "has_verified_email", False) else "not verified yet"
        return f"{obj.user.email} ({verified})"

    def get_queryset(self, request):
        verified = EmailAddress.objects.filter(user=OuterRef("user"), verified=True)
        return (
            super()
            .get_queryset(request)
            .annotate(has_verified_email=Exists(verified), exit_bytes_day=exits.charged_subquery(OuterRef("user")))
        )

    # --- columns -----------------------------------------------------------------------------
    @admin.display(description="researcher", ordering="full_name")
    def researcher(self, obj):
        unverified = "" if getattr(obj, "has_verified_email", True) else " (not verified yet)"
        return format_html(
            "<strong>{}</strong><br>{}{}<br><span class='help'>{}</span>",
            obj.display_name,
            obj.user.email,
            unverified,
            obj.institution,
        )

    @admin.display(description="exit bytes, 24 h", ordering="exit_bytes_day")
    def exit_bytes(self, obj):
        used = getattr(obj, "exit_bytes_day", None) or 0
        return f"{filesizeformat(used)} of {filesizeformat(settings.M2D_EXIT_BYTES_PER_RESEARCHER_PER_DAY)}"

    @admin.display(description="intended use")
    def statement(self, obj):
        return Truncator(obj.intended_use).chars(280)

    @admin.display(description="signed up", ordering="user__date_joined")
    def signed_up(self, obj):
        return obj.user.date_joined.strftime("%Y-%m-%d")

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return format_html(
            '<strong style="color:{}">{}</strong>', STATUS_COLOURS.get(obj.status, "inherit"), obj.get_status_display()
        )

    @admin.display(description="decision")
    def decision(self, obj):
        if not obj.decided_at:
            return "—"
        who = obj.decided_by.get_username() if obj.decided_by else "the platform"
        text = f"{obj.get_status_display()} by {who} on {obj.decided_at:%Y-%m-%d %H:%M}"
        return format_html("{}<br>{}", text, obj.decision_reason) if obj.decision_reason else text

    @admin.display(description="MLflow")
    def mlflow(self, obj):
        access = obj.mlflow_access
        label = M(access).label
        if access == M.PENDING:
            return format_html('<strong style="color:#8a5a00">{}</strong>', label)
        if access == M.REVOKING:
            return format_html('<strong style="color:#b3261e">{}</strong>', label)
        if access == M.ACTIVE:
            return format_html("active: <code>{}</code>", obj.mlflow_username)
        return "—"

    @admin.display(description="decide")
    def decide(self, obj):
        # The Approve button submits the surrounding admin form (it carries the CSRF token) to a
        # one-row view; rejecting and disabling first ask for the reason.
        parts = []
        if obj.status != S.APPROVED:
            parts.append(
                format_html(
                    '<button type="submit" class="button default" formaction="{}" formmethod="post">Approve</button>',
                    reverse("admin:accounts_researcher_approve", args=[obj.pk]),
                )
            )
        if obj.status in (S.PENDING, S.APPROVED):
            url = reverse("admin:accounts_researcher_reject", args=[obj.pk])
            parts.append(format_html('<a class="button" href="{}">Reject…</a>', url))
        if obj.status == S.APPROVED:
            url = reverse("admin:accounts_researcher_disable", args=[obj.pk])
            parts.append(format_html('<a class="button" href="{}">Disable…</a>', url))
        return format_html_join("", "<div style='margin:0 0 .3rem'>{}</div>", ((part,) for part in parts))

    # --- one-row views -----------------------------------------------------------------------
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/approve/", view(self.approve_view), name="accounts_researcher_approve"),
            path("<int:pk>/reject/", view(self.reject_view), name="accounts_researcher_reject"),
            path("<int:pk>/disable/", view(self.disable_view), name="accounts_researcher_disable"),
            *super().get_urls(),
        ]

    def _researcher_for(self, request, pk):
        if not self.has_change_permission(request):
            raise PermissionDenied
        return get_object_or_404(Researcher.objects.select_related("user"), pk=pk)

    def approve_view(self, request, pk):
        researcher = self._researcher_for(request, pk)
        if request.method != "POST":
            return redirect("admin:accounts_researcher_change", pk)
        self._approve(request, [researcher])
        # Back to the page the button was on (the list, filtered as it was, or the researcher).
        back = request.META.get("HTTP_REFERER", "")
        if not url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
            back = reverse("admin:accounts_researcher_changelist")
        return redirect(back)

    def reject_view(self, request, pk):
        return self._decide(request, [self._researcher_for(request, pk)], researcher_reject, "reject")

    def disable_view(self, request, pk):
        return self._decide(request, [self._researcher_for(request, pk)], researcher_disable, "disable")

    # --- bulk actions ------------------------------------------------------------------------
    @admin.action(description="Approve selected researchers", permissions=["change"])
    def approve_selected(self, request, queryset):
        self._approve(request, list(queryset))

    @admin.action(description="Reject selected researchers…", permissions=["change"])
    def reject_selected(self, request, queryset):
        return self._decide(request, list(queryset), researcher_reject, "reject", bulk_action="reject_selected")

    @admin.action(description="Disable selected researchers…", permissions=["change"])
    def disable_selected(self, request, queryset):
        return self._decide(request, list(queryset), researcher_disable, "disable", bulk_action="disable_selected")

    @admin.action(description="Retry MLflow set-up / removal now", permissions=["change"])
    def retry_mlflow(self, request, queryset):
        done = 0
        for researcher in queryset:
            try:
                done += mlflow_retry(researcher=researcher)
            except MlflowUnavailable as exc:
                self.message_user(request, f"MLflow is unreachable; nothing changed. ({exc})", messages.ERROR)
                return
            except MlflowRefused as exc:
                self.message_user(request, f"{researcher.display_name}: {exc}", messages.ERROR)
        self.message_user(request, f"MLflow is up to date for {done} researcher(s).", messages.SUCCESS)

    # --- shared ------------------------------------------------------------------------------
    def _approve(self, request, researchers):
        for researcher in researchers:
            try:
                researcher = researcher_approve(by=request.user, researcher=researcher)
            except AccountError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            if researcher.mlflow_provisioned_at:
                self.message_user(
                    request,
                    f"{researcher.display_name} is approved; MLflow user {researcher.mlflow_username} is set up.",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"{researcher.display_name} is approved, but MLflow could not be reached. The account shows "
                    "“MLflow: pending” until MLflow is back; it is retried automatically.",
                    messages.WARNING,
                )

    def _decide(self, request, researchers, service, verb, bulk_action=""):
        form = DecisionReasonForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            for researcher in researchers:
                try:
                    service(by=request.user, researcher=researcher, reason=form.cleaned_data["reason"])
                except AccountError as exc:
                    self.message_user(request, str(exc), messages.ERROR)
                    break
            else:
                names = ", ".join(r.display_name for r in researchers)
                done = {"reject": "Rejected", "disable": "Disabled"}[verb]
                self.message_user(request, f"{done}: {names}. MLflow access is revoked.", messages.SUCCESS)
            if bulk_action:
                return None  # back to the list the action was run from
            return redirect("admin:accounts_researcher_changelist")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{verb.capitalize()} {len(researchers)} researcher(s)",
            "verb": verb,
            "researchers": researchers,
            "form": form,
            "bulk_action": bulk_action,
        }
        return TemplateResponse(request, "admin/accounts/researcher/decide.html", context)
