"""The one writer of `DatasetBatch.status` and `DatasetVersion.status`: check the move, lock, save."""

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from cotrain_site.jobs import Job
from cotrain_site.transitions import lock_for_transition
from curation.models import BatchStatus, DatasetBatch, DatasetVersion, DatasetVersionStatus

V = DatasetVersionStatus
# A build beats once, when claimed; a message may take over one silent past the timeout (it starts from scratch),
# and one that failed: the task's autoretry after a transient error (a full disk) builds it again.
BUILD_JOB = Job(DatasetVersion, "curation.tasks.build_dataset_version", waiting=Q(status=V.PENDING),
                working=Q(status=V.BUILDING), timeout_setting="DATASET_BUILD_TIMEOUT_SECONDS", beat_field="claimed_at",
                claim_stale=True, also_claimable=Q(status=V.FAILED))
BATCH_TRANSITIONS = {
    (BatchStatus.DRAFT, BatchStatus.APPROVED),
    (BatchStatus.DRAFT, BatchStatus.DISCARDED),
}
VERSION_TRANSITIONS = {
    (DatasetVersionStatus.PENDING, DatasetVersionStatus.BUILDING),
    (DatasetVersionStatus.BUILDING, DatasetVersionStatus.READY),
    (DatasetVersionStatus.BUILDING, DatasetVersionStatus.FAILED),
    # A worker that died mid-build leaves `building`: a redelivered message claims it
    # again, or the sweeper queues it again once its claim is older than the build timeout.
    (DatasetVersionStatus.BUILDING, DatasetVersionStatus.BUILDING),
    (DatasetVersionStatus.BUILDING, DatasetVersionStatus.PENDING),
    # Celery's retry of a transient failure claims it again; a maintainer's retry queues it again.
    (DatasetVersionStatus.FAILED, DatasetVersionStatus.BUILDING),
    (DatasetVersionStatus.FAILED, DatasetVersionStatus.PENDING),
}


@transaction.atomic
def batch_transition(*, batch: DatasetBatch, to_status: str, actor: User | None) -> DatasetBatch:
    locked = lock_for_transition(DatasetBatch, pk=batch.pk, to_status=to_status, allowed=BATCH_TRANSITIONS,
                                 label="Batch {row.name}")
    locked.status = to_status
    fields = ["status"]
    if to_status == BatchStatus.APPROVED:
        locked.approved_by, locked.approved_at = actor, timezone.now()
        fields += ["approved_by", "approved_at"]
    locked.save(update_fields=fields)
    return locked


@transaction.atomic
def dataset_version_transition(*, version: DatasetVersion, to_status: str, error: str = "") -> DatasetVersion:
    locked = lock_for_transition(DatasetVersion, pk=version.pk, to_status=to_status, allowed=VERSION_TRANSITIONS,
                                 label="Dataset version {row.pk}")
    locked.status, locked.error = to_status, error
    fields = ["status", "error"]
    if to_status == DatasetVersionStatus.BUILDING:
        # The attempt number fences the build: an older attempt that wakes up can record nothing.
        locked.attempt += 1
        locked.claimed_at = timezone.now()
        fields += ["attempt", "claimed_at"]
    if to_status == DatasetVersionStatus.READY:
        locked.built_at = timezone.now()
        fields.append("built_at")
    locked.save(update_fields=fields)
    return locked
