import math

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import User
from accounts.selectors import login_lockout_for
from cotrain_site.client_ip import client_ip

LOCKED_CODE = "locked"


class SignUpForm(UserCreationForm):
    # UserCreationForm says "A user with that username already exists.": a person must
    # learn that to pick another name, and with no required email there is no private
    # channel to say it through. So the answer stays, and what keeps it from being a
    # cheap way to list accounts is the sign-up limit per address (every attempt
    # counts, see accounts.views.signup) plus the login lockout per account.
    class Meta:
        model = User
        fields = ["username", "email"]
        help_texts = {"email": "Optional; used only to tell you when your cases change."}


class LockoutMessageMixin(forms.Form):
    """Says why a locked-out log-in fails, instead of "wrong password" (the backend refuses it)."""

    request: HttpRequest | None

    def clean(self) -> dict[str, object]:
        try:
            return super().clean()
        except ValidationError:
            username = self.cleaned_data.get("username")
            lockout = None
            if username is not None:
                address = client_ip(self.request) if self.request is not None else None
                lockout = login_lockout_for(username=User.normalize_username(username), address=address)
            if lockout is None:
                raise
            minutes = max(1, math.ceil((lockout.locked_until - timezone.now()).total_seconds() / 60))
            raise ValidationError(
                "Too many failed log-ins for this account or from your network: log-in is blocked, "
                "even with the right password, for about %(minutes)d more minute(s). "
                "A maintainer can lift the block sooner.",
                code=LOCKED_CODE,
                params={"minutes": minutes},
            ) from None


class LoginForm(LockoutMessageMixin, AuthenticationForm):
    pass


class AdminLoginForm(LockoutMessageMixin, AdminAuthenticationForm):
    pass
