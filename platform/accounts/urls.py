from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

app_name = "accounts"
urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("token/", views.api_token, name="api_token"),
    path("token/regenerate/", views.api_token_regenerate, name="api_token_regenerate"),
    path("token/revoke/", views.api_token_revoke, name="api_token_revoke"),
]
