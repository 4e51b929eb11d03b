from django.urls import path

from training import views

app_name = "training"
urlpatterns = [
    path("", views.run_list, name="run_list"),
    path("start/", views.run_start_view, name="run_start"),
    path("<int:run_id>/", views.run_detail, name="run_detail"),
    path("<int:run_id>/progress.json", views.run_progress_json, name="run_progress"),
    path("<int:run_id>/cancel/", views.run_cancel_view, name="run_cancel"),
    path("<int:run_id>/override/", views.evaluation_override_view, name="evaluation_override"),
    path("<int:run_id>/retry/", views.run_retry_view, name="run_retry"),
    path("<int:run_id>/evaluation/retry/", views.evaluation_retry_view, name="evaluation_retry"),
]
