import hashlib
import secrets
from datetime import timedelta
from typing import NamedTuple

from django.apps import apps
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken, LockoutKind, LoginLockout, User
from accounts.roles import CONTRIBUTOR_GROUP, MAINTAINER_GROUP, ROLE_PERMISSIONS


def roles_sync(*, using: str = "default") -> None:
    """Create the role groups and give each exactly its permissions; safe to rerun."""
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    for group_name, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=group_name)
        permissions = []
        for dotted in codenames:
            app_label, codename = dotted.split(".")
            permissions.append(
                Permission.objects.using(using).get(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(permissions)


@transaction.atomic
def user_create(*, username: str, password: str, email: str = "") -> User:
    """Sign-up: every new person is a contributor."""
    user = User.objects.create_user(username=username, email=email, password=password)
    user.groups.add(Group.objects.get(name=CONTRIBUTOR_GROUP))
    return user


@transaction.atomic
def user_make_maintainer(*, user: User) -> User:
    user.groups.add(Group.objects.get(name=CONTRIBUTOR_GROUP), Group.objects.get(name=MAINTAINER_GROUP))
    # Permission checks cache per user object; drop the cache so the new role applies now.
    for cached in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cached, None)
    return user


class IssuedApiToken(NamedTuple):
    """A new token and its key: the only moment the key exists outside the client."""

    token: ApiToken
    key: str


def api_token_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def api_token_create(*, user: User) -> IssuedApiToken:
    """A new key for `user`, valid API_TOKEN_DAYS; their earlier keys stop working (one key per person)."""
    api_tokens_revoke(user=user)
    key = secrets.token_urlsafe(32)
    now = timezone.now()
    token = ApiToken.objects.create(
        user=user,
        key_hash=api_token_hash(key),
        prefix=key[:8],
        created_at=now,
        expires_at=now + timedelta(days=settings.API_TOKEN_DAYS),
    )
    return IssuedApiToken(token=token, key=key)


def api_tokens_revoke(*, user: User | None = None, pks: list[int] | None = None) -> int:
    """Revoke the live tokens of `user`, or those with primary keys `pks`; how many were revoked."""
    if user is None and pks is None:
        raise ValueError("api_tokens_revoke needs a user or token pks (it never revokes every token)")
    tokens = ApiToken.objects.filter(revoked_at__isnull=True)
    if user is not None:
        tokens = tokens.filter(user=user)
    if pks is not None:
        tokens = tokens.filter(pk__in=pks)
    return tokens.update(revoked_at=timezone.now())


@transaction.atomic
def maintainer_ensure(*, username: str, password: str, email: str = "") -> User:
    """Create or reset a maintainer account (the demo's); the password is set every time."""
    user = User.objects.filter(username=username).first()
    if user is None:
        user = User.objects.create_user(username=username, email=email, password=password)
    else:
        user.set_password(password)
        user.is_active = True
        user.save(update_fields=["password", "is_active"])
    return user_make_maintainer(user=user)


# Login lockout. Failures are counted in the cache (a fixed window from the first
# failure); reaching a limit writes a LoginLockout row, which is what refuses log-ins,
# so that clearing the row (and its counter) is all an unlock needs.


def _failure_counter_key(kind: str, key: str) -> str:
    # Hashed: a typed name may hold characters or a length that cache keys must not.
    return f"login-failures:{kind}:{hashlib.sha256(key.encode()).hexdigest()}"


def _count_failure(counter: str) -> int:
    window = settings.LOGIN_LOCKOUT_SECONDS
    cache.add(counter, 0, timeout=window)
    try:
        return cache.incr(counter)
    except ValueError:  # the window ended between add and incr: this failure opens the next one
        cache.add(counter, 1, timeout=window)
        return 1


def login_failure_record(*, username: str, address: str | None) -> LoginLockout | None:
    """Count one failed log-in for the name and the address; the lockout it caused, if any."""
    limits = []
    # A longer name cannot be an account (nor fit the lockout's key); the address still counts it.
    if len(username) <= LoginLockout._meta.get_field("key").max_length:
        limits.append((LockoutKind.ACCOUNT, username, settings.LOGIN_FAILURES_PER_USER))
    if address:
        limits.append((LockoutKind.ADDRESS, address, settings.LOGIN_FAILURES_PER_IP))
    caused = None
    for kind, key, limit in limits:
        failures = _count_failure(_failure_counter_key(kind, key))
        if failures >= limit:
            # Expired rows are kept only until the next lock, so names typed once do not pile up.
            LoginLockout.objects.filter(locked_until__lte=timezone.now()).delete()
            caused, _ = LoginLockout.objects.update_or_create(
                kind=kind,
                key=key,
                defaults={
                    "failures": failures,
                    "created_at": timezone.now(),
                    "locked_until": timezone.now() + timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS),
                },
            )
    return caused


def login_success_record(*, username: str) -> None:
    """A right password ends the name's run of failures (the address keeps its count)."""
    cache.delete(_failure_counter_key(LockoutKind.ACCOUNT, username))


def login_lockouts_clear(*, lockouts: list[LoginLockout]) -> int:
    """Lift these lockouts now, counters included (else the next failure locks again); how many."""
    for lockout in lockouts:
        cache.delete(_failure_counter_key(lockout.kind, lockout.key))
    return LoginLockout.objects.filter(pk__in=[lockout.pk for lockout in lockouts]).delete()[0]


def user_unlock(*, username: str) -> int:
    """Lift the lockout of the account name `username` (and reset its failures); 0 when it had none."""
    cache.delete(_failure_counter_key(LockoutKind.ACCOUNT, username))
    return LoginLockout.objects.filter(kind=LockoutKind.ACCOUNT, key=username).delete()[0]
