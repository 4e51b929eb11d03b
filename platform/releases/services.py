"""Writes to releases; the only place their status changes. Issue 4 adds publishing."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from releases.models import Release, ReleaseStatus

RELEASE_TRANSITIONS = {
    (ReleaseStatus.PUBLISHING, ReleaseStatus.PUBLISHED),
    (ReleaseStatus.PUBLISHING, ReleaseStatus.FAILED),
    (ReleaseStatus.FAILED, ReleaseStatus.PUBLISHING),
    (ReleaseStatus.PUBLISHED, ReleaseStatus.WITHDRAWN),
}


@transaction.atomic
def release_transition(*, release: Release, to_status: str, actor: User | None) -> Release:
    locked = Release.objects.select_for_update().get(pk=release.pk)
    if (locked.status, to_status) not in RELEASE_TRANSITIONS:
        raise ValidationError(f"Release {locked.tag} is {locked.status}; it cannot become {to_status}.")
    locked.status = to_status
    fields = ["status"]
    if to_status == ReleaseStatus.PUBLISHED:
        locked.published_by, locked.published_at = actor, timezone.now()
        fields += ["published_by", "published_at"]
    locked.save(update_fields=fields)
    return locked
