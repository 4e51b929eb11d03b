from django.urls import path

from intake import api

app_name = "api"
urlpatterns = [
    path("cases/", api.CaseListCreate.as_view(), name="cases"),
    path("cases/<int:pk>/", api.CaseDetail.as_view(), name="case"),
    path("requests/", api.AcceptedRequestList.as_view(), name="requests"),
]
