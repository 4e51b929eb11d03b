from django.urls import path

from curation import views

app_name = "curation"
urlpatterns = [
    path("", views.batch_list, name="batch_list"),
    path("new/", views.batch_create_view, name="batch_create"),
    path("benchmarks/", views.benchmark_list, name="benchmark_list"),
    path("benchmarks/<int:benchmark_id>/toggle/", views.benchmark_toggle, name="benchmark_toggle"),
    path("<int:batch_id>/", views.batch_detail, name="batch_detail"),
    path("<int:batch_id>/approve/", views.batch_approve_view, name="batch_approve"),
    path("<int:batch_id>/dataset/retry/", views.dataset_version_retry_view, name="dataset_version_retry"),
    path("<int:batch_id>/discard/", views.batch_discard_view, name="batch_discard"),
    path("<int:batch_id>/cases/add/", views.batch_case_add_view, name="batch_case_add"),
    path("<int:batch_id>/cases/<int:case_id>/remove/", views.batch_case_remove_view, name="batch_case_remove"),
]
