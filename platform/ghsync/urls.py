from django.urls import path

from ghsync import views

app_name = "ghsync"
urlpatterns = [
    path("webhook/", views.webhook, name="webhook"),
    path("priorities/", views.priorities, name="priorities"),
    path("deliveries/<int:pk>/retry/", views.delivery_retry, name="delivery_retry"),
    path("comments/<int:pk>/retry/", views.comment_retry, name="comment_retry"),
]
