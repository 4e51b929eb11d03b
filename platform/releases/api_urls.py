from django.urls import path

from releases import api

app_name = "releases_api"
urlpatterns = [
    path("releases/", api.ReleaseList.as_view(), name="releases"),
    path("releases/<slug:tag>/", api.ReleaseDetail.as_view(), name="release"),
]
