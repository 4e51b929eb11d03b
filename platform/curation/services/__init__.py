"""Writes to dataset batches and versions; the only place their statuses change.

A package re-exporting one import path: `batches` (create, edit, approve),
`dataset_versions` (curate, build, verify, requeue, retry),
`benchmarks` (the registered evaluation sets) and `transitions` (the status writers).
"""

from curation.services.batches import (
    batch_approve,
    batch_case_add,
    batch_case_remove,
    batch_create,
    batch_create_monthly,
    batch_discard,
)
from curation.services.dataset_versions import (
    DatasetTampered,
    dataset_content_hash,
    dataset_curate,
    dataset_curated_hash,
    dataset_split,
    dataset_version_build,
    dataset_version_on_stale,
    dataset_version_retry,
    dataset_version_verify,
)
from curation.services.transitions import (
    BATCH_TRANSITIONS,
    BUILD_JOB,
    VERSION_TRANSITIONS,
    batch_transition,
    dataset_version_transition,
)

__all__ = [
    "BATCH_TRANSITIONS",
    "BUILD_JOB",
    "VERSION_TRANSITIONS",
    "DatasetTampered",
    "batch_approve",
    "batch_case_add",
    "batch_case_remove",
    "batch_create",
    "batch_create_monthly",
    "batch_discard",
    "batch_transition",
    "dataset_content_hash",
    "dataset_curate",
    "dataset_curated_hash",
    "dataset_split",
    "dataset_version_build",
    "dataset_version_on_stale",
    "dataset_version_retry",
    "dataset_version_transition",
    "dataset_version_verify",
]
