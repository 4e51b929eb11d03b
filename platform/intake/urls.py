from django.urls import path

from intake import views

app_name = "intake"
urlpatterns = [
    path("", views.home, name="home"),
    path("submit/", views.submit, name="submit"),
    path("my-cases/", views.my_cases, name="my_cases"),
    path("requests/", views.requests_public, name="requests"),
    path("cases/<int:case_id>/", views.case_detail, name="case_detail"),
    path("cases/<int:case_id>/withdraw/", views.case_withdraw, name="case_withdraw"),
    path("cases/<int:case_id>/answer/", views.case_answer, name="case_answer"),
    path("cases/<int:case_id>/vote/", views.case_vote_toggle, name="case_vote"),
    path("cases/<int:case_id>/triage/", views.triage_case, name="triage_case"),
    path("cases/<int:case_id>/duplicate-of/<int:original_id>/", views.triage_mark_duplicate,
         name="triage_mark_duplicate"),
    path("triage/", views.triage_list, name="triage"),
    path("triage/bulk/", views.triage_bulk, name="triage_bulk"),
]
