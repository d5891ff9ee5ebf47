from django.urls import path

from . import views

app_name = "exports"
urlpatterns = [
    path("submissions/<int:submission_id>/request/", views.request_release, name="request"),
    path("submissions/<int:submission_id>/cancel/", views.cancel_request, name="cancel"),
    path("submissions/<int:submission_id>/provenance.json", views.provenance, name="provenance"),
    path("submissions/<int:submission_id>/logs/<str:kind>/", views.full_log, name="full_log"),
    path("download/<str:token>/", views.download, name="download"),
    path("review/", views.review_queue, name="review_queue"),
    path("review/<int:pk>/", views.review, name="review"),
    path("review/<int:pk>/logs/", views.add_log, name="add_log"),
    path("review/<int:pk>/disclosure/", views.assess_again, name="assess_again"),
    path("review/<int:pk>/files/<int:file_id>/", views.file_whole, name="file_whole"),
]
