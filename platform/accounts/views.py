from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.forms import SignUpForm
from accounts.services import api_token_get_or_create, api_token_rotate, user_create


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("intake:my_cases")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = user_create(
            username=form.cleaned_data["username"],
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"],
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}. You can now submit cases.")
        return redirect("intake:submit")
    return render(request, "accounts/signup.html", {"form": form})


@login_required
def api_token(request: HttpRequest) -> HttpResponse:
    token = api_token_get_or_create(user=request.user)
    return render(request, "accounts/api_token.html", {"token": token})


@login_required
@require_POST
def api_token_regenerate(request: HttpRequest) -> HttpResponse:
    api_token_rotate(user=request.user)
    messages.success(request, "A new API token was created; the old one no longer works.")
    return redirect("accounts:api_token")
