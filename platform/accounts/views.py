import math

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts.forms import LOCKED_CODE, LoginForm, SignUpForm
from accounts.selectors import api_token_current
from accounts.services import api_token_create, api_tokens_revoke, user_create
from accounts.throttles import SignUpIpRateThrottle

SIGNUP_REFUSAL = "Too many sign-ups from your network: no account was created. Please try again in about {} minute(s)."


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("intake:my_cases")
    form = SignUpForm(request.POST or None)
    if request.method == "POST":
        # Before validation, and every attempt counts: a refused or failed sign-up says
        # nothing about which usernames exist beyond what the allowance lets through.
        throttle = SignUpIpRateThrottle()
        if not throttle.allow_request(request, None):
            minutes = max(1, math.ceil((throttle.wait() or 60) / 60))
            messages.error(request, SIGNUP_REFUSAL.format(minutes))
            # An unbound form: showing the posted one would validate it, username check included.
            return render(request, "accounts/signup.html", {"form": SignUpForm()}, status=429)
    if request.method == "POST" and form.is_valid():
        user = user_create(
            username=form.cleaned_data["username"],
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"],
        )
        login(request, user, backend="accounts.backends.LockoutModelBackend")
        messages.success(request, f"Welcome, {user.username}. You can now submit cases.")
        return redirect("intake:submit")
    return render(request, "accounts/signup.html", {"form": form})


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "accounts/login.html"

    def form_invalid(self, form: LoginForm) -> HttpResponse:
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, LOCKED_CODE):
            response.status_code = 429
        return response


# The token page shows a key once; no browser or proxy may keep a copy of it.
@never_cache
@login_required
def api_token(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/api_token.html", {"token": api_token_current(user=request.user)})


@never_cache
@login_required
@require_POST
def api_token_regenerate(request: HttpRequest) -> HttpResponse:
    # Rendered, not redirected: the key exists only in this response.
    issued = api_token_create(user=request.user)
    context = {"token": issued.token, "new_key": issued.key}
    return render(request, "accounts/api_token.html", context)


@never_cache
@login_required
@require_POST
def api_token_revoke(request: HttpRequest) -> HttpResponse:
    if api_tokens_revoke(user=request.user):
        messages.success(request, "Your API token was revoked; it no longer works.")
    return redirect("accounts:api_token")
