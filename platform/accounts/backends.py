"""The password check every log-in goes through, with the lockout in front of it.

As an authentication backend (not a view or form feature) it covers the site's
login, `/admin/` and any DRF password authentication alike: all of them call
`django.contrib.auth.authenticate`, which asks this backend.
"""

from asgiref.sync import sync_to_async
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from accounts.models import User
from accounts.selectors import login_lockout_for
from accounts.services import login_failure_record, login_success_record
from cotrain_site.client_ip import client_ip


class LockoutModelBackend(ModelBackend):
    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: object
    ) -> User | None:
        username = username if username is not None else kwargs.get(User.USERNAME_FIELD)  # type: ignore[assignment]
        if username is None or password is None:
            return None
        username = User.normalize_username(username)
        address = client_ip(request) if request is not None else None
        if login_lockout_for(username=username, address=address) is not None:
            # Refused before the password is checked: while locked, the right password
            # gets the same answer as a wrong one, so guessing on learns nothing.
            # PermissionDenied stops `authenticate` from asking any other backend.
            raise PermissionDenied("locked out")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            login_failure_record(username=username, address=address)
        else:
            login_success_record(username=username)
        return user

    async def aauthenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: object
    ) -> User | None:
        # ModelBackend's async path does not call `authenticate`; route it there so it cannot skip the lockout.
        return await sync_to_async(self.authenticate)(request, username=username, password=password, **kwargs)
