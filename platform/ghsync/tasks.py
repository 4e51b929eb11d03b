"""Celery tasks of the GitHub intake. Each takes an id, claims its work, and is safe to run twice."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from cotrain_site.jobs import enqueue, enqueue_on_commit
from ghsync import selectors, services
from ghsync.client import GithubUnavailable
from releases.models import Release

log = logging.getLogger(__name__)
TRANSIENT = (OperationalError, InterfaceError)


@shared_task(autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def sync_all_sources() -> int:
    """Periodic (beat): one sync task per enabled source."""
    source_ids = selectors.source_ids_enabled()
    for source_id in source_ids:
        # Not a job row: a sync is a periodic read under a lease (`source_claim`), and the next beat is its retry.
        enqueue("ghsync.tasks.sync_source", source_id)
    return len(source_ids)


@shared_task(acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def sync_source(source_id: int) -> dict[str, object]:
    """Read one source (only reads GitHub); then hand needs-info requests to `ask_for_examples`."""
    if not services.source_claim(source_id=source_id):
        return {"skipped": "another sync holds this source"}
    try:
        source = selectors.source_get(source_id=source_id)
        summary = services.source_sync(source=source, client=services.source_client(source=source))
    finally:
        services.source_release(source_id=source_id)
    if source.ask_for_examples:
        enqueue_on_commit("ghsync.tasks.ask_for_examples", source_id)
    return summary.as_dict()


# The delivery's own attempts (counted on its row) limit its retries, not Celery's count
# (max_retries=None): the sweeper's messages start Celery's count at 0 again. A transient
# error outside the attempt (the database down at the claim) is retried 3 times by
# Celery; the row waits meanwhile, and the sweeper sends it again if those run out.
@shared_task(bind=True, acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=None,
             retry_kwargs={"max_retries": 3})  # fmt: skip
def process_delivery(self, delivery_id: int) -> str:
    run = services.delivery_run(delivery_id=delivery_id)
    if run.retry_in is not None:
        raise self.retry(countdown=run.retry_in)
    if run.processed:
        source = selectors.source_for_delivery(delivery_id=delivery_id)
        if source is not None and source.ask_for_examples:
            enqueue_on_commit("ghsync.tasks.ask_for_examples", source.pk)
    return run.result


@shared_task(acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def ask_for_examples(source_id: int) -> int:
    """Post one polite "please add an example" comment per needs-info request (the source must enable it)."""
    source = selectors.source_get(source_id=source_id)
    if not source.ask_for_examples:
        return 0
    client = services.source_client(source=source)
    posted = 0
    for item in selectors.items_needing_example(source=source):
        comment = services.ask_for_example_intent(item=item)
        if comment is not None:
            try:
                posted += services.comment_post(comment_id=comment.pk, client=client).status == "posted"
            except GithubUnavailable as exc:
                log.warning("asking for examples on %s stopped: %s", source, exc)
                break
    return posted


# As for deliveries: the comment's attempts limit its retries.
@shared_task(bind=True, acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=None,
             retry_kwargs={"max_retries": 3})  # fmt: skip
def post_comment(self, comment_id: int) -> str:
    """Post one recorded comment; GitHub unavailable: retried with back-off (the comment's attempts limit it)."""
    run = services.comment_post_run(comment_id=comment_id)
    if run.retry_in is not None:
        raise self.retry(countdown=run.retry_in)
    return run.status


@shared_task(autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def sweep_stale() -> dict[str, dict[str, int]]:
    """Periodic (beat): send again the deliveries and posts whose message was lost or whose worker died."""
    return {"deliveries": services.deliveries_sweep(), "comments": services.comments_sweep()}


@shared_task(acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def report_release(release_id: int) -> int:
    """Record and post the report-back comments of a published release (`ghsync.services.report_release`)."""
    return len(services.report_release(release=Release.objects.get(pk=release_id)))
