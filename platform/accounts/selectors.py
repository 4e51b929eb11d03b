from django.contrib.auth.models import AnonymousUser
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import ApiToken, LockoutKind, LoginLockout, User
from accounts.roles import TRIAGE_PERMISSION


def user_is_maintainer(*, user: User | AnonymousUser) -> bool:
    return bool(user.is_authenticated and user.is_active and user.has_perm(TRIAGE_PERMISSION))


def api_token_current(*, user: User) -> ApiToken | None:
    """The person's newest token that has not been revoked (it may have expired)."""
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).first()


def api_token_by_hash(*, key_hash: str) -> ApiToken | None:
    """The token with this key hash, with its user; None when unknown, revoked or expired."""
    return (
        ApiToken.objects.select_related("user")
        .filter(key_hash=key_hash, revoked_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )


def login_lockouts_active() -> QuerySet[LoginLockout]:
    return LoginLockout.objects.filter(locked_until__gt=timezone.now())


def login_lockout_for(*, username: str, address: str | None) -> LoginLockout | None:
    """The lockout in force for this account name or this client address, the one ending last."""
    matches = Q(kind=LockoutKind.ACCOUNT, key=username)
    if address:
        matches |= Q(kind=LockoutKind.ADDRESS, key=address)
    return login_lockouts_active().filter(matches).order_by("-locked_until").first()
