"""The one writer of `DatasetBatch.status` and `DatasetVersion.status`: check the move, lock, save."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from curation.models import BatchStatus, DatasetBatch, DatasetVersion, DatasetVersionStatus

BATCH_TRANSITIONS = {
    (BatchStatus.DRAFT, BatchStatus.APPROVED),
    (BatchStatus.DRAFT, BatchStatus.DISCARDED),
}
VERSION_TRANSITIONS = {
    (DatasetVersionStatus.PENDING, DatasetVersionStatus.BUILDING),
    (DatasetVersionStatus.BUILDING, DatasetVersionStatus.READY),
    (DatasetVersionStatus.BUILDING, DatasetVersionStatus.FAILED),
    # A worker that died mid-build leaves `building`; a rerun starts again.
    (DatasetVersionStatus.BUILDING, DatasetVersionStatus.BUILDING),
    (DatasetVersionStatus.FAILED, DatasetVersionStatus.BUILDING),
}


@transaction.atomic
def batch_transition(*, batch: DatasetBatch, to_status: str, actor: User | None) -> DatasetBatch:
    locked = DatasetBatch.objects.select_for_update().get(pk=batch.pk)
    if (locked.status, to_status) not in BATCH_TRANSITIONS:
        raise ValidationError(f"Batch {locked.name} is {locked.status}; it cannot become {to_status}.")
    locked.status = to_status
    fields = ["status"]
    if to_status == BatchStatus.APPROVED:
        locked.approved_by, locked.approved_at = actor, timezone.now()
        fields += ["approved_by", "approved_at"]
    locked.save(update_fields=fields)
    return locked


@transaction.atomic
def dataset_version_transition(*, version: DatasetVersion, to_status: str, error: str = "") -> DatasetVersion:
    locked = DatasetVersion.objects.select_for_update().get(pk=version.pk)
    if (locked.status, to_status) not in VERSION_TRANSITIONS:
        raise ValidationError(f"Dataset version {locked.pk} is {locked.status}; it cannot become {to_status}.")
    locked.status, locked.error = to_status, error
    fields = ["status", "error"]
    if to_status == DatasetVersionStatus.READY:
        locked.built_at = timezone.now()
        fields.append("built_at")
    locked.save(update_fields=fields)
    return locked
