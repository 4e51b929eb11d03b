"""GitHub webhooks: verify, store once, process later in Celery, and never lose one.

The view verifies the signature and stores the delivery (`webhook_receive`) in
one short transaction and answers; `ghsync.tasks.process_delivery` then claims it
and applies it through the same `item_upsert` / `item_mark_deleted` as the sync.
Deliveries may arrive in any order; the item's `updated_at` and tombstones decide
the final state (see `services.items`).

Every delivery ends `processed` or `failed` with its reason:

- received -> processing is the claim (one worker, attempts + 1); processing ends
  processed (what it did, or why there was nothing to do) or failed (the error);
- a transient database error sends it back to received with a retry after an
  exponential back-off, until `MAX_ATTEMPTS`; then it fails;
- the sweeper (`deliveries_sweep`, beat) sends a received delivery whose message is
  overdue again (broker down at receive time, message lost) and takes back a
  processing one whose worker died;
- GitHub's "Redeliver" keeps the `X-GitHub-Delivery` id: a redelivery of a failed
  or stuck delivery processes it again; of a processed one, it is a no-op. A
  maintainer may process a failed delivery again too (`delivery_reprocess`).
"""

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone

from cotrain_site.jobs import Job, job_claim, job_resend_lost, job_send, job_sweep
from cotrain_site.transitions import transition
from ghsync.models import DELIVERY_ID_MAX, DeliveryStatus, GithubSource, ItemKind, WebhookDelivery
from ghsync.services.items import (
    ISSUE_NUMBER_MAX,
    Outcome,
    PayloadError,
    github_int,
    github_time,
    item_mark_deleted,
    item_upsert,
)
from ghsync.services.priority import priorities_refresh
from ghsync.services.sources import source_api_url

log = logging.getLogger(__name__)
HANDLED = {
    "issues": {"opened", "edited", "deleted", "labeled", "reopened"},
    "issue_comment": {"created", "edited", "deleted"},
}
# Errors worth another attempt: the database was unreachable, restarted, or chose this
# transaction as a deadlock victim. Anything else would fail the same way again.
TRANSIENT = (OperationalError, InterfaceError)
MAX_ATTEMPTS = 5
RETRY_BASE_SECONDS = 30  # 30 s, 1, 2, 4 min between the attempts
# Printable ASCII, as GitHub's UUIDs (and any sane proxy's ids) are.
DELIVERY_ID_CHARS = re.compile(r"[!-~]+")
S = DeliveryStatus
# One delivery is one item, claimed once and never beating: a claim older than the timeout belongs to a dead worker.
# A retry after a transient error waits `received` with `queued_at` in the future, so the sweeper leaves it be.
DELIVERY_JOB = Job(WebhookDelivery, "ghsync.tasks.process_delivery", waiting=Q(status=S.RECEIVED),
                   working=Q(status=S.PROCESSING), timeout_setting="GITHUB_DELIVERY_TIMEOUT_SECONDS",
                   attempt_field="attempts", beat_field="claimed_at", sent_field="queued_at")
MOVES = {
    (S.RECEIVED, S.PROCESSING),  # the claim
    (S.PROCESSING, S.PROCESSED),
    (S.PROCESSING, S.FAILED),
    (S.PROCESSING, S.RECEIVED),  # a retry after a transient error, or a dead worker's claim taken back
    (S.FAILED, S.RECEIVED),  # redelivered, or "process again"
}


def webhook_signature_valid(*, secret: str, body: bytes, signature: str) -> bool:
    """`X-Hub-Signature-256: sha256=HEX` is the HMAC-SHA256 of the raw body; compared in constant time."""
    if not secret or not signature.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode())


def delivery_id_error(delivery_id: str) -> str:
    """Why `delivery_id` cannot name a delivery ("" when it can): it is stored whole, never cut."""
    if not delivery_id:
        return "missing X-GitHub-Delivery"
    if len(delivery_id) > DELIVERY_ID_MAX:
        return f"X-GitHub-Delivery is longer than {DELIVERY_ID_MAX} characters"
    if not DELIVERY_ID_CHARS.fullmatch(delivery_id):
        return "X-GitHub-Delivery must be printable ASCII"
    return ""


def webhook_receive(*, delivery_id: str, event: str, payload: dict[str, Any]) -> tuple[WebhookDelivery, bool]:
    """Store a verified delivery and queue it; returns (delivery, queued).

    queued is False for a redelivery with nothing to do: processed already, or in hand.
    """
    if error := delivery_id_error(delivery_id):
        raise ValidationError(error, code="bad_delivery_id")
    action = payload.get("action")
    with transaction.atomic():
        delivery, created = WebhookDelivery.objects.get_or_create(
            delivery_id=delivery_id,
            defaults={
                "event": event[:50],
                "action": action[:50] if isinstance(action, str) else "",
                "payload": payload,
            },
        )
        if created:
            job_send(DELIVERY_JOB, delivery)
            return delivery, True
        return delivery, _redelivered(delivery_id=delivery.pk)


def _redelivered(*, delivery_id: int) -> bool:
    """GitHub's "Redeliver": a failed delivery is processed again, a stuck one sent again; True when queued."""
    locked = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
    if locked.status == S.FAILED:
        delivery_reprocess(delivery_id=delivery_id, why="redelivered by GitHub")
        return True
    if WebhookDelivery.objects.filter(DELIVERY_JOB.working & DELIVERY_JOB.stale(), pk=delivery_id).exists():
        return delivery_on_stale(locked) == "requeued"
    return job_resend_lost(DELIVERY_JOB, pk=delivery_id)


def _move(*, delivery_id: int, to_status: str, **fields: Any) -> WebhookDelivery:
    """The one write path of a delivery's status: locked row, allowed move, `update_fields`."""
    return transition(WebhookDelivery, pk=delivery_id, to_status=to_status, allowed=MOVES,
                      label="Delivery {row.delivery_id}", changes=lambda locked: fields)


def delivery_claim(*, delivery_id: int) -> WebhookDelivery | None:
    """RECEIVED -> PROCESSING, once: a second worker (or a duplicate message) gets None."""
    return job_claim(DELIVERY_JOB, pk=delivery_id, claim=lambda delivery: _move(
        delivery_id=delivery.pk, to_status=S.PROCESSING, **DELIVERY_JOB.claimed(delivery)))


def delivery_finish(*, delivery: WebhookDelivery, result: str) -> None:
    _move(delivery_id=delivery.pk, to_status=S.PROCESSED, result=result[:300], error="", processed_at=timezone.now())


@transaction.atomic
def delivery_fail(*, delivery_id: int, error: str) -> None:
    """PROCESSING -> FAILED with its reason (shown to maintainers; they may process it again)."""
    _move(delivery_id=delivery_id, to_status=S.FAILED, error=error[:5000], processed_at=timezone.now())


@transaction.atomic
def delivery_retry_later(*, delivery_id: int, error: str) -> int | None:
    """After a transient error: back to RECEIVED with a retry due after the back-off (seconds returned).

    None when its attempts are spent: it is FAILED instead.
    """
    locked = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
    if locked.attempts >= MAX_ATTEMPTS:
        delivery_fail(delivery_id=delivery_id, error=f"gave up after {locked.attempts} attempts: {error}")
        return None
    delay = RETRY_BASE_SECONDS * 2 ** (locked.attempts - 1)
    _move(
        delivery_id=delivery_id,
        to_status=S.RECEIVED,
        queued_at=timezone.now() + timedelta(seconds=delay),
        error=f"attempt {locked.attempts} failed, retrying in {delay} s: {error}"[:5000],
    )
    return delay


@transaction.atomic
def delivery_reprocess(*, delivery_id: int, why: str = "processed again") -> WebhookDelivery:
    """FAILED -> RECEIVED and queued, its attempts counted afresh (a redelivery, or a maintainer's retry)."""
    locked = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
    if locked.status != S.FAILED:
        why = f"Delivery {locked.delivery_id} is {locked.status}; only a failed one is processed again."
        raise ValidationError(why, code="not_failed")
    delivery = _move(
        delivery_id=delivery_id,
        to_status=S.RECEIVED,
        attempts=0,
        queued_at=timezone.now(),
        claimed_at=None,
        processed_at=None,
        error=f"{why}; it had failed: {locked.error}"[:5000],
    )
    job_send(DELIVERY_JOB, delivery)
    return delivery


def delivery_on_stale(delivery: WebhookDelivery) -> str:
    """The sweeper's move for a delivery whose worker died: "requeued", or "failed" when out of attempts."""
    if delivery.attempts >= MAX_ATTEMPTS:
        delivery_fail(delivery_id=delivery.pk,
                      error=f"the worker stopped while processing it ({delivery.attempts} attempts)")
        return "failed"
    error = f"attempt {delivery.attempts} stopped without finishing (its worker was lost)"
    job_send(DELIVERY_JOB, _move(delivery_id=delivery.pk, to_status=S.RECEIVED, error=error))
    return "requeued"


def deliveries_sweep() -> dict[str, int]:
    """Periodic: queue again the deliveries whose message is overdue or whose worker died."""
    outcomes, resent = job_sweep(DELIVERY_JOB, on_stale=delivery_on_stale)
    return {"requeued": outcomes.count("requeued") + sum(resent), "failed": outcomes.count("failed")}


def _source_for(payload: dict[str, Any]) -> GithubSource | None:
    repository = payload.get("repository")
    repository = repository if isinstance(repository, dict) else {}
    full_name, api_url = repository.get("full_name"), repository.get("url")
    candidates = list(GithubSource.objects.filter(repo__iexact=full_name if isinstance(full_name, str) else ""))
    # Two servers may host the same owner/name: the repository's API URL says which.
    for source in candidates:
        if isinstance(api_url, str) and api_url.startswith(source_api_url(source=source) + "/"):
            return source
    return candidates[0] if len(candidates) == 1 else None


def _object(payload: dict[str, Any], key: str) -> dict[str, Any]:
    value = payload.get(key)
    if not isinstance(value, dict):
        raise PayloadError(f"payload has no {key}")
    return value


def _apply(*, source: GithubSource, event: str, action: str, payload: dict[str, Any]) -> Outcome | str:
    issue = _object(payload, "issue")
    number = github_int(issue.get("number"), what="issue number", maximum=ISSUE_NUMBER_MAX)
    if event == "issue_comment":
        if number not in source.tracking_issues:
            return f"comment on #{number}, not a tracking issue"
        comment = _object(payload, "comment")
        if action == "deleted":
            return item_mark_deleted(
                source=source,
                kind=ItemKind.COMMENT,
                issue_number=number,
                github_id=comment.get("id"),
                payload=comment,
                at=github_time(comment.get("updated_at"), field="updated_at", notes=[]),
            )
        return item_upsert(source=source, kind=ItemKind.COMMENT, payload=comment, issue_number=number)
    labels = {label.get("name") for label in issue.get("labels") or [] if isinstance(label, dict)}
    if action == "deleted":
        return item_mark_deleted(
            source=source,
            kind=ItemKind.ISSUE,
            issue_number=number,
            github_id=issue.get("id"),
            at=github_time(issue.get("updated_at"), field="updated_at", notes=[]),
            payload=issue,
        )
    if not labels & set(source.intake_labels):
        return f"issue #{number} has no intake label"
    return item_upsert(source=source, kind=ItemKind.ISSUE, payload=issue, issue_number=number)


def _result(outcome: Outcome) -> str:
    result = f"{outcome.action} {outcome.external_id}" + (f" ({outcome.reason})" if outcome.reason else "")
    return result + (f" [cleaned: {'; '.join(outcome.cleaning)}]" if outcome.cleaning else "")


def delivery_process(*, delivery: WebhookDelivery) -> str:
    """Apply one claimed delivery and mark it processed; returns what it did (also stored on the delivery).

    Raises what applying it raised (nothing is kept of a failed attempt); `delivery_run` records it.
    """
    event, action, payload = delivery.event, delivery.action, delivery.payload
    with transaction.atomic():
        if event == "ping":
            result = "pong"
        elif (source := _source_for(payload)) is None:
            result = "no source for this repository"
        elif action not in HANDLED.get(event, set()):
            result = f"{event}.{action} is not handled"
        else:
            outcome = _apply(source=source, event=event, action=action, payload=payload)
            if isinstance(outcome, Outcome) and outcome.action in ("new", "updated", "withdrawn"):
                priorities_refresh(logins={outcome.author_login})
            result = outcome if isinstance(outcome, str) else _result(outcome)
        delivery_finish(delivery=delivery, result=result)
    return result


@dataclass(frozen=True)
class DeliveryRun:
    """What one run of the task did: its result, and the back-off when it is to be retried."""

    result: str
    retry_in: int | None = None
    processed: bool = False


def delivery_run(*, delivery_id: int) -> DeliveryRun:
    """Claim and process a delivery; every outcome is recorded on it (processed, failed, or a retry due)."""
    delivery = delivery_claim(delivery_id=delivery_id)
    if delivery is None:
        return DeliveryRun("nothing to do")
    try:
        return DeliveryRun(delivery_process(delivery=delivery), processed=True)
    except TRANSIENT as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.warning("delivery %s: attempt %d failed: %s", delivery.delivery_id, delivery.attempts, error)
        delay = delivery_retry_later(delivery_id=delivery_id, error=error)
        return DeliveryRun(f"failed: {error}" if delay is None else f"retrying in {delay} s: {error}", delay)
    except PayloadError as exc:
        delivery_fail(delivery_id=delivery_id, error=str(exc))
        return DeliveryRun(f"failed: {exc}")
    except Exception as exc:
        # Whatever broke, the delivery must not stay `processing`: it fails with the error
        # (and the traceback in the log), for a maintainer to see and process again.
        log.exception("delivery %s failed", delivery.delivery_id)
        delivery_fail(delivery_id=delivery_id, error=f"{type(exc).__name__}: {exc}")
        return DeliveryRun(f"failed: {type(exc).__name__}: {exc}")
