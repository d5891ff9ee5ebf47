from django.contrib import admin

from .models import Researcher


@admin.register(Researcher)
class ResearcherAdmin(admin.ModelAdmin):
    list_display = ("user", "institution", "status", "mlflow_username", "mlflow_provisioned_at", "decided_at")
    list_filter = ("status",)
    search_fields = ("user__username", "user__email", "institution")
    readonly_fields = ("mlflow_username", "mlflow_experiment_id", "mlflow_provisioned_at", "decided_by", "decided_at")
    exclude = ("mlflow_password_encrypted",)
