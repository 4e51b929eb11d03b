from django.urls import path

from releases import views

app_name = "releases"
urlpatterns = [
    path("", views.release_list, name="list"),
    path("publish/<int:run_id>/", views.release_publish_view, name="publish"),
    path("<slug:tag>/", views.release_detail, name="detail"),
    path("<slug:tag>/files/<path:name>", views.file_download, name="file"),
]
