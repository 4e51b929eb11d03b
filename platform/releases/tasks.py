"""Celery task of releases, on the `default` queue: copy a claimed release's files and publish it.

It takes ids and is safe to run twice (`releases.services.release_copy_files`).
"""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from releases.services import release_copy_files

logger = logging.getLogger(__name__)
TRANSIENT = (OperationalError, InterfaceError)


@shared_task(name="releases.tasks.publish_release", autoretry_for=TRANSIENT, retry_backoff=5, max_retries=5,
             acks_late=True)
def publish_release(release_id: int, by_id: int | None) -> dict[str, object]:
    release = release_copy_files(release_id=release_id, by_id=by_id)
    logger.info("release %s is %s", release.tag, release.status)
    return {"release_id": release.pk, "tag": release.tag, "status": release.status}
