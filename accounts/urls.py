from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("", views.profile, name="profile"),
    path("mlflow-password/", views.rotate_mlflow_password, name="rotate_mlflow_password"),
    path("api-token/", views.api_token, name="api_token"),
    path("e-mails/", views.email_preferences, name="email_preferences"),
]
