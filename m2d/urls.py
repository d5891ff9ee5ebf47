from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="submissions:list", permanent=False)),
    path("accounts/profile/", include("accounts.urls")),
    path("accounts/", include("allauth.urls")),
    path("submissions/", include("submissions.urls")),
    path("exports/", include("exports.urls")),
    path("models/", include("modelstore.urls")),
    path("api/v1/", include("api.urls")),
    path("", include("serving.urls")),
    path("admin/", admin.site.urls),
]
