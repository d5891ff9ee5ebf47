from django.urls import path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from . import batch_views, model_views, views

register_converter(model_views.VersionConverter, "model_version")
app_name = "api"
router = DefaultRouter()
router.register("submissions", views.SubmissionViewSet, basename="submission")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
    path("downloads/<str:token>/", views.download, name="download"),
    path("model-card.schema.json", model_views.CardSchemaView.as_view(), name="model-card-schema"),
    path("models", model_views.ModelsView.as_view(), name="models"),
    path("models/<str:name>", model_views.ModelView.as_view(), name="model"),
    path("models/<str:name>/all", model_views.AllVersionsView.as_view(), name="model-versions"),
    path("models/<str:name>/<model_version:version>", model_views.VersionView.as_view(), name="model-version"),
    path(
        "models/<str:name>/<model_version:version>/set-default",
        model_views.SetDefaultView.as_view(),
        name="model-default",
    ),
    path(
        "models/<str:name>/<model_version:version>/batch-jobs",
        batch_views.BatchJobsView.as_view(),
        name="model-batch-jobs",
    ),
    path(
        "models/<str:name>/<model_version:version>/batch-jobs/<str:job>",
        batch_views.BatchJobView.as_view(),
        name="model-batch-job",
    ),
    path(
        "models/<str:name>/<model_version:version>/batch-jobs/<str:job>/results",
        batch_views.BatchResultsView.as_view(),
        name="model-batch-results",
    ),
    path(
        "models/<str:name>/<model_version:version>/predictions",
        batch_views.PredictionsView.as_view(),
        name="model-predictions",
    ),
    path("models/<str:name>/aliases/<str:alias>", model_views.AliasView.as_view(), name="model-alias"),
    *router.urls,
]
