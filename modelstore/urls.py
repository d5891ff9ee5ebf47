from django.urls import path

from . import views

app_name = "modelstore"
urlpatterns = [
    path("", views.store, name="list"),
    path("register/", views.register, name="register"),
    path("staff/", views.staff_list, name="staff"),
    path("<str:name>/", views.model_page, name="model"),
    path("<str:name>/aliases/", views.alias_set, name="alias"),
    path("<str:name>/<int:number>/set-default/", views.set_default, name="set_default"),
    path("<str:name>/<int:number>/retire/", views.retire, name="retire"),
    path("<str:name>/<int:number>/scale/", views.scale, name="scale"),
    path("<str:name>/<int:number>/files.zip", views.download_zip, name="download_zip"),
    path("<str:name>/<int:number>/files/<path:path>", views.download_file, name="download"),
]
