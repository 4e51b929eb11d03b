"""GitHub webhooks: verify, store once, process later in Celery.

The view verifies the signature and stores the delivery (`webhook_receive`) in
one short transaction and answers; `ghsync.tasks.process_delivery` then claims it
and applies it through the same `item_upsert` / `item_mark_deleted` as the sync.
GitHub retries and redelivers: the `X-GitHub-Delivery` id is unique, so a second
copy stores nothing and enqueues nothing. Deliveries may arrive in any order; the
item's `updated_at` and tombstones decide the final state (see `services.items`).
"""

import hashlib
import hmac
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ghsync.models import DeliveryStatus, GithubSource, ItemKind, WebhookDelivery
from ghsync.services.items import Outcome, item_mark_deleted, item_upsert
from ghsync.services.priority import priorities_refresh
from ghsync.services.sources import source_api_url

HANDLED = {
    "issues": {"opened", "edited", "deleted", "labeled", "reopened"},
    "issue_comment": {"created", "edited", "deleted"},
}


def webhook_signature_valid(*, secret: str, body: bytes, signature: str) -> bool:
    """`X-Hub-Signature-256: sha256=HEX` is the HMAC-SHA256 of the raw body; compared in constant time."""
    if not secret or not signature.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode())


def webhook_receive(*, delivery_id: str, event: str, payload: dict[str, Any]) -> WebhookDelivery | None:
    """Store a verified delivery; None when this delivery id was stored before (a redelivery)."""
    action = str(payload.get("action") or "")
    try:
        with transaction.atomic():
            return WebhookDelivery.objects.create(
                delivery_id=delivery_id[:100], event=event[:50], action=action[:50], payload=payload
            )
    except IntegrityError:
        return None


def delivery_claim(*, delivery_id: int) -> WebhookDelivery | None:
    """RECEIVED -> PROCESSING, once: a second worker (or a rerun) gets None."""
    claimed = WebhookDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.RECEIVED).update(
        status=DeliveryStatus.PROCESSING
    )
    return WebhookDelivery.objects.get(pk=delivery_id) if claimed else None


def delivery_finish(*, delivery: WebhookDelivery, status: str, result: str) -> None:
    delivery.status, delivery.result, delivery.processed_at = status, result[:300], timezone.now()
    delivery.save(update_fields=["status", "result", "processed_at"])


def _source_for(payload: dict[str, Any]) -> GithubSource | None:
    repository = payload.get("repository") or {}
    candidates = list(GithubSource.objects.filter(repo__iexact=repository.get("full_name") or ""))
    api_url = repository.get("url") or ""
    # Two servers may host the same owner/name: the repository's API URL says which.
    for source in candidates:
        if api_url.startswith(source_api_url(source=source) + "/"):
            return source
    return candidates[0] if len(candidates) == 1 else None


def _apply(*, source: GithubSource, event: str, action: str, payload: dict[str, Any]) -> Outcome | str:
    issue = payload.get("issue") or {}
    number = issue.get("number")
    if not isinstance(number, int):
        return "no issue in payload"
    if event == "issue_comment":
        if number not in source.tracking_issues:
            return f"comment on #{number}, not a tracking issue"
        comment = payload.get("comment") or {}
        if action == "deleted":
            at = parse_datetime(comment.get("updated_at") or "") or timezone.now()
            return item_mark_deleted(
                source=source,
                kind=ItemKind.COMMENT,
                issue_number=number,
                github_id=comment["id"],
                at=at,
                payload=comment,
            )
        return item_upsert(source=source, kind=ItemKind.COMMENT, payload=comment, issue_number=number)
    labels = {label.get("name") for label in issue.get("labels") or [] if isinstance(label, dict)}
    if action == "deleted":
        at = parse_datetime(issue.get("updated_at") or "") or timezone.now()
        return item_mark_deleted(
            source=source, kind=ItemKind.ISSUE, issue_number=number, github_id=issue["id"], at=at, payload=issue
        )
    if not labels & set(source.intake_labels):
        return f"issue #{number} has no intake label"
    return item_upsert(source=source, kind=ItemKind.ISSUE, payload=issue, issue_number=number)


def delivery_process(*, delivery: WebhookDelivery) -> str:
    """Apply one claimed delivery; returns what it did (also stored on the delivery)."""
    event, action, payload = delivery.event, delivery.action, delivery.payload
    if event == "ping":
        delivery_finish(delivery=delivery, status=DeliveryStatus.DONE, result="pong")
        return "pong"
    source = _source_for(payload)
    if action not in HANDLED.get(event, set()) or source is None:
        why = "no source for this repository" if source is None else f"{event}.{action} is not handled"
        delivery_finish(delivery=delivery, status=DeliveryStatus.IGNORED, result=why)
        return why
    with transaction.atomic():
        outcome = _apply(source=source, event=event, action=action, payload=payload)
        if isinstance(outcome, str):
            delivery_finish(delivery=delivery, status=DeliveryStatus.IGNORED, result=outcome)
            return outcome
        if outcome.action in ("new", "updated", "withdrawn"):
            priorities_refresh(logins={outcome.author_login})
        result = f"{outcome.action} {outcome.external_id}" + (f" ({outcome.reason})" if outcome.reason else "")
        delivery_finish(delivery=delivery, status=DeliveryStatus.DONE, result=result)
    return result
