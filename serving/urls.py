from django.urls import path

from . import views

app_name = "serving"
urlpatterns = [
    path("predictions/<str:name>", views.Predictions.as_view(), name="predictions"),
    path("predictions/<str:name>/<str:version>", views.Predictions.as_view(), name="predictions_version"),
    path("v2", views.V2Server.as_view(), name="v2"),
    path("v2/health/live", views.V2Live.as_view(), name="v2_live"),
    path("v2/health/ready", views.V2Ready.as_view(), name="v2_ready"),
    path("v2/models/<str:name>", views.V2Model.as_view(), name="v2_model"),
    path("v2/models/<str:name>/versions/<str:version>", views.V2Model.as_view(), name="v2_model_version"),
    path("v2/models/<str:name>/ready", views.V2ModelReady.as_view(), name="v2_model_ready"),
    path("v2/models/<str:name>/versions/<str:version>/ready", views.V2ModelReady.as_view(), name="v2_version_ready"),
    path("v2/models/<str:name>/infer", views.V2Infer.as_view(), name="v2_infer"),
    path("v2/models/<str:name>/versions/<str:version>/infer", views.V2Infer.as_view(), name="v2_version_infer"),
]
