"""Roles: groups with permissions, sign-up makes contributors, API tokens."""

import pytest
from django.contrib.auth.models import Group

from accounts.models import User
from accounts.roles import ROLE_PERMISSIONS, TRIAGE_PERMISSION
from accounts.selectors import api_token_by_hash, user_is_maintainer
from accounts.services import api_token_create, api_token_hash, roles_sync

pytestmark = pytest.mark.django_db


def test_groups_hold_exactly_the_role_permissions() -> None:
    roles_sync()  # rerunning is harmless
    for name, codenames in ROLE_PERMISSIONS.items():
        group = Group.objects.get(name=name)
        got = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
        assert got == set(codenames)


def test_contributor_and_maintainer_roles(contributor: User, maintainer: User) -> None:
    assert list(contributor.groups.values_list("name", flat=True)) == ["contributor"]
    assert not user_is_maintainer(user=contributor)
    assert user_is_maintainer(user=User.objects.get(pk=maintainer.pk))
    assert User.objects.get(pk=maintainer.pk).has_perm(TRIAGE_PERMISSION)


def test_token_rotation_invalidates_the_old_token(contributor: User) -> None:
    # Only a key's hash is kept, so a key cannot be read back: a new token replaces the old.
    old = api_token_create(user=contributor).key
    new = api_token_create(user=contributor).key
    assert new != old
    assert api_token_by_hash(key_hash=api_token_hash(old)) is None
    assert api_token_by_hash(key_hash=api_token_hash(new)).user == contributor
