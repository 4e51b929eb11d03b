"""Celery tasks of releases, on the `default` queue: copy a claimed release's files and publish it,
and (beat) take over releases whose copy died.

They take ids and are safe to run twice (`releases.services.release_copy_files`).
"""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from cotrain_site.jobs import job_sweep
from releases.services import PUBLISH_JOB, release_copy_files, release_on_stale

logger = logging.getLogger(__name__)
TRANSIENT = (OperationalError, InterfaceError)


@shared_task(name="releases.tasks.publish_release", autoretry_for=TRANSIENT, retry_backoff=5, max_retries=5,
             acks_late=True)
def publish_release(release_id: int, by_id: int | None) -> dict[str, object]:
    release = release_copy_files(release_id=release_id, by_id=by_id)
    logger.info("release %s is %s", release.tag, release.status)
    return {"release_id": release.pk, "tag": release.tag, "status": release.status}


@shared_task(name="releases.tasks.sweep_stale_publishing", autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def sweep_stale_publishing() -> dict[str, int]:
    """Periodic (beat): queue again the releases stuck in `publishing`, or fail those out of attempts;
    and enqueue again those whose first message was lost (no copy ever claimed them)."""
    outcomes, lost = job_sweep(PUBLISH_JOB, on_stale=release_on_stale)
    return {"requeued": outcomes.count("requeued"), "failed": outcomes.count("failed"), "lost": sum(lost)}
