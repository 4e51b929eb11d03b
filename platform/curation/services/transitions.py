"""The one writer of `DatasetBatch.status` and `DatasetVersion.status`: check the move, lock, save."""

from typing import Any

from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from cotrain_site.jobs import Job
from cotrain_site.transitions import transition
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


def batch_transition(*, batch: DatasetBatch, to_status: str, actor: User | None) -> DatasetBatch:
    approval = {"approved_by": actor, "approved_at": timezone.now()} if to_status == BatchStatus.APPROVED else {}
    return transition(DatasetBatch, pk=batch.pk, to_status=to_status, allowed=BATCH_TRANSITIONS,
                      label="Batch {row.name}", changes=lambda locked: approval)


def dataset_version_transition(*, version: DatasetVersion, to_status: str, error: str = "") -> DatasetVersion:
    def changes(locked: DatasetVersion) -> dict[str, Any]:
        values: dict[str, Any] = {"error": error}
        if to_status == V.BUILDING:
            values |= BUILD_JOB.claimed(locked)  # the build's attempt: an older one that wakes up records nothing
        if to_status == V.READY:
            values["built_at"] = timezone.now()
        return values

    return transition(DatasetVersion, pk=version.pk, to_status=to_status, allowed=VERSION_TRANSITIONS,
                      label="Dataset version {row.pk}", changes=changes)
