from django.urls import path

from . import views

app_name = "submissions"
urlpatterns = [
    path("", views.submission_list, name="list"),
    path("new/", views.submission_upload, name="upload"),
    path("<int:pk>/", views.submission_detail, name="detail"),
    path("<int:pk>/live/", views.submission_live, name="live"),
    path("<int:pk>/cancel/", views.submission_cancel_view, name="cancel"),
    path("dashboard/", views.admin_dashboard, name="dashboard"),
]
