"""Celery tasks of curation, on the `default` queue. They take ids and call the services.

All are safe to run twice: building claims the version (`pending` -> `building`)
under a row lock and leaves a ready version (or one a live build holds) alone; the
monthly draft is named after its month and returns the existing batch; the sweep
enqueues only what waited past its timeout and stamps it.
"""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from cotrain_site.jobs import job_sweep
from curation.services import BUILD_JOB, batch_create_monthly, dataset_version_build, dataset_version_on_stale

logger = logging.getLogger(__name__)
# A database that restarts or a full disk may pass; bad data does not, and is recorded as failed.
TRANSIENT = (OperationalError, InterfaceError, OSError)


@shared_task(
    name="curation.tasks.build_dataset_version",
    autoretry_for=TRANSIENT,
    retry_backoff=5,
    max_retries=5,
    acks_late=True,
)
def build_dataset_version(version_id: int) -> dict[str, object]:
    version = dataset_version_build(version_id=version_id)
    logger.info("dataset version %s is %s at %s (%s)", version.pk, version.status, version.path, version.content_hash)
    return {"version_id": version.pk, "status": version.status, "content_hash": version.content_hash}


@shared_task(name="curation.tasks.create_monthly_batch", autoretry_for=TRANSIENT, retry_backoff=5, max_retries=3)
def create_monthly_batch() -> int | None:
    batch = batch_create_monthly()
    logger.info("monthly batch: %s", batch.name if batch else "no accepted cases")
    return batch.pk if batch else None


@shared_task(name="curation.tasks.sweep_dataset_builds", autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def sweep_dataset_builds() -> dict[str, int]:
    """Periodic (beat): enqueue again the builds whose message was lost or whose worker died."""
    rebuilt, resent = job_sweep(BUILD_JOB, on_stale=dataset_version_on_stale)
    return {"requeued": len(rebuilt) + sum(resent)}
