from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from rest_framework.authtoken.models import Token

from accounts.models import User
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
    for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cache, None)
    return user


def api_token_get_or_create(*, user: User) -> Token:
    token, _ = Token.objects.get_or_create(user=user)
    return token


@transaction.atomic
def api_token_rotate(*, user: User) -> Token:
    Token.objects.filter(user=user).delete()
    return Token.objects.create(user=user)


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
