from django.contrib.auth.models import AnonymousUser

from accounts.models import User
from accounts.roles import TRIAGE_PERMISSION


def user_is_maintainer(*, user: User | AnonymousUser) -> bool:
    return bool(user.is_authenticated and user.is_active and user.has_perm(TRIAGE_PERMISSION))


def user_get_by_username(*, username: str) -> User | None:
    return User.objects.filter(username=username).first()
