from django.urls import path

from ghsync import views

app_name = "ghsync"
urlpatterns = [
    path("webhook/", views.webhook, name="webhook"),
    path("priorities/", views.priorities, name="priorities"),
]
