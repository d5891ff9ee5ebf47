from django.apps import AppConfig


class ServingConfig(AppConfig):
    name = "serving"
    verbose_name = "Serving"
    default_auto_field = "django.db.models.BigAutoField"
