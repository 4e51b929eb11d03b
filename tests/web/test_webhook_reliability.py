"""Issue 12: no webhook delivery or GitHub post is ever lost or stuck, and no link from GitHub runs script.

Each trigger from the issue (fuzzed deliveries that stayed `processing` for ever) is
replayed through the real view and the real task body; the broker, GitHub and the
database are only made to fail at their network boundary (an unreachable broker
port, the local GitHub answering errors, a query refused as a dropped connection would be).
"""

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery.exceptions import Retry
from django.conf import settings as django_settings
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone

from accounts.models import User
from cotrain_site import celery_app
from ghsync import tasks
from ghsync.models import (
    CommentKind,
    CommentStatus,
    DeliveryStatus,
    GithubItem,
    GithubSource,
    OutgoingComment,
    WebhookDelivery,
)
from ghsync.services import comment_intent, delivery_run, source_set_options
from ghsync.services.webhooks import MAX_ATTEMPTS
from intake.models import FeedbackCase

from .ghsync_support import *  # noqa: F403 - the fixtures: github, clock, source, sync, broker
from .ghsync_support import WEBHOOK_SECRET, BrokerQueue
from .github_fake import FakeGithub, load_fixture

pytestmark = pytest.mark.django_db
URL = "/github/webhook/"
ISSUE_EXT = "127.0.0.1/IEIT-Yuan/Yuan-2.0#30"
PROCESS = "ghsync.tasks.process_delivery"


def deliver(event: str, payload: Any, *, delivery: str | None = None, raw: bytes | None = None) -> Any:
    body = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode()
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return Client().post(
        URL, data=body, content_type="application/json", HTTP_X_GITHUB_EVENT=event,
        HTTP_X_GITHUB_DELIVERY=delivery or str(uuid.uuid4()), HTTP_X_HUB_SIGNATURE_256=signature,
    )  # fmt: skip


def labeled_issue(**changes: Any) -> dict[str, Any]:
    """The real `issues.labeled` delivery, its issue changed (a value of None removes the key)."""
    payload = load_fixture("webhook_issues_labeled.json")
    for key, value in changes.items():
        if value is None:
            payload["issue"].pop(key)
        else:
            payload["issue"][key] = value
    return payload


def the_delivery() -> WebhookDelivery:
    return WebhookDelivery.objects.get()


@pytest.fixture
def db_drops_item_queries() -> Iterator[list[str]]:
    """Queries on GitHub items fail as a dropped database connection does (until the list is cleared)."""
    failing = ["ghsync_githubitem"]

    def refuse(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if failing and failing[0] in sql:
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse):
        yield failing


@pytest.fixture
def broker_down() -> Iterator[None]:
    """The broker unreachable (nothing listens on port 1) for every send, as when Redis is down."""
    original = celery_app.conf.broker_url

    def use(url: str) -> None:
        celery_app.conf.broker_url = url
        celery_app._pool = None  # the connection pools are built lazily from broker_url
        celery_app.amqp._producer_pool = None

    use("redis://127.0.0.1:1/0")
    yield
    use(original)


# --- every trigger from the issue ends processed or failed, never stuck -------------------------------------


def test_an_ansi_escape_in_the_body_is_removed_and_the_request_kept(source: GithubSource) -> None:
    issue = load_fixture("webhook_issues_labeled.json")["issue"]
    body = issue["body"].replace("古文", "\u001b[31m古文\u001b[0m", 1) + "\u202e\x00"
    deliver("issues", labeled_issue(body=body))
    assert tasks.process_delivery(the_delivery().pk).startswith(f"new {ISSUE_EXT}")
    delivery = the_delivery()
    assert delivery.status == DeliveryStatus.PROCESSED and "body: removed" in delivery.result
    item = GithubItem.objects.get()
    assert item.body == issue["body"]  # exactly the text without the escapes
    # The NUL went when the delivery was received (PostgreSQL cannot store it); the rest when it was read.
    assert item.cleaning == ["body: removed 10 control or escape character(s)"]
    assert FeedbackCase.objects.get().scenario == "古文断句"


def test_a_javascript_html_url_is_never_stored_nor_rendered(
    source: GithubSource, maintainer: User, client_for: Callable[[User], Client]
) -> None:
    deliver("issues", labeled_issue(html_url="javascript:alert(document.domain)"))
    tasks.process_delivery(the_delivery().pk)
    assert the_delivery().status == DeliveryStatus.PROCESSED
    item = GithubItem.objects.get()
    assert (item.html_url, item.case.source_url) == ("", "")
    dropped = "html_url: dropped 'javascript:alert(document.domain)' (not an http(s) link on github.com)"
    assert item.cleaning == [dropped]
    html = client_for(maintainer).get("/github/priorities/").content.decode()
    assert "javascript:" not in html and ISSUE_EXT in html


@pytest.mark.parametrize(
    "url",
    ["https://evil.example/IEIT-Yuan/Yuan-2.0/issues/30", "data:text/html,<script>alert(1)</script>",
     "https://github.com\u0000.evil.example/x", "//github.com/IEIT-Yuan/Yuan-2.0/issues/30"],
)  # fmt: skip
def test_links_off_the_github_host_are_dropped(source: GithubSource, url: str) -> None:
    deliver("issues", labeled_issue(html_url=url))
    tasks.process_delivery(the_delivery().pk)
    assert GithubItem.objects.get().html_url == ""


def test_a_link_stored_before_the_check_is_not_rendered_as_a_link(
    source: GithubSource, maintainer: User, client_for: Callable[[User], Client]
) -> None:
    deliver("issues", labeled_issue())
    tasks.process_delivery(the_delivery().pk)
    GithubItem.objects.update(html_url="javascript:alert(document.domain)")  # a row from before the fix
    html = client_for(maintainer).get("/github/priorities/").content.decode()
    assert "javascript:" not in html and ISSUE_EXT in html


def test_a_login_longer_than_the_column_is_cut(source: GithubSource) -> None:
    payload = labeled_issue()
    payload["issue"]["user"]["login"] = "x" * 151
    deliver("issues", payload)
    tasks.process_delivery(the_delivery().pk)
    assert the_delivery().status == DeliveryStatus.PROCESSED
    item = GithubItem.objects.get()
    assert item.author_login == "x" * 100 and item.cleaning == ["login: cut from 151 to 100 characters"]


@pytest.mark.parametrize("updated_at", ["yesterday", "2024-13-45T00:00:00Z", 1706745600, None])
def test_a_bad_updated_at_is_read_as_now(source: GithubSource, updated_at: object) -> None:
    before = timezone.now()
    deliver("issues", labeled_issue(updated_at=updated_at))
    tasks.process_delivery(the_delivery().pk)
    assert the_delivery().status == DeliveryStatus.PROCESSED
    item = GithubItem.objects.get()
    assert item.github_updated_at >= before and item.cleaning[0].startswith("updated_at: ")


def test_a_payload_without_an_issue_id_fails_with_its_reason(source: GithubSource) -> None:
    deliver("issues", labeled_issue(id=None))
    assert tasks.process_delivery(the_delivery().pk) == "failed: payload has no issue id"
    delivery = the_delivery()
    assert (delivery.status, delivery.error, delivery.attempts) == (DeliveryStatus.FAILED, "payload has no issue id", 1)
    assert delivery.processed_at is not None and not GithubItem.objects.exists()


def test_an_unexpected_error_while_processing_fails_the_delivery_with_it(source: GithubSource) -> None:
    # A label whose name is an object: building the set of names raises TypeError.
    deliver("issues", labeled_issue(labels=[{"name": {"not": "a string"}}]))
    assert tasks.process_delivery(the_delivery().pk).startswith("failed: TypeError: unhashable type")
    delivery = the_delivery()
    assert delivery.status == DeliveryStatus.FAILED and delivery.error.startswith("TypeError: unhashable type")
    assert tasks.process_delivery(delivery.pk) == "nothing to do"  # a duplicate message changes nothing


# --- transient errors: retried with back-off, then failed ------------------------------------------------


def test_a_dropped_database_connection_is_retried_with_backoff(
    source: GithubSource, db_drops_item_queries: list[str]
) -> None:
    deliver("issues", labeled_issue())
    pk = the_delivery().pk
    with pytest.raises(Retry):
        tasks.process_delivery(pk)  # as a worker runs it: Celery's retry is raised
    delivery = the_delivery()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.RECEIVED, 1)
    assert delivery.error.startswith("attempt 1 failed, retrying in 30 s: OperationalError: server closed")
    assert delivery.queued_at > timezone.now() + timedelta(seconds=25)  # the sweeper leaves it to the retry
    assert delivery_run(delivery_id=pk).retry_in == 60  # the back-off doubles
    db_drops_item_queries.clear()
    assert tasks.process_delivery(pk) == f"new {ISSUE_EXT}"
    assert (the_delivery().status, the_delivery().error) == (DeliveryStatus.PROCESSED, "")


def test_retries_end_failed_after_the_last_attempt(source: GithubSource, db_drops_item_queries: list[str]) -> None:
    deliver("issues", labeled_issue())
    result = tasks.process_delivery.apply(args=[the_delivery().pk])  # eager: each retry runs at once
    delivery = the_delivery()
    assert result.get() == "failed: OperationalError: server closed the connection unexpectedly"
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, MAX_ATTEMPTS)
    assert delivery.error.startswith(f"gave up after {MAX_ATTEMPTS} attempts: OperationalError")


# --- redelivery, the sweeper, the broker down ----------------------------------------------------------------


def test_redelivery_of_a_failed_delivery_processes_it(
    source: GithubSource, db_drops_item_queries: list[str], broker: BrokerQueue, django_capture_on_commit_callbacks
) -> None:
    payload, delivery_id = labeled_issue(), "8f4e7b10-cc78-11e3-81ab-4c9367dc0958"
    deliver("issues", payload, delivery=delivery_id)
    tasks.process_delivery.apply(args=[the_delivery().pk])
    assert the_delivery().status == DeliveryStatus.FAILED
    db_drops_item_queries.clear()  # the database is back
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver("issues", payload, delivery=delivery_id)  # GitHub's "Redeliver"
    assert (response.status_code, response.json()) == (202, {"status": "queued"})
    assert broker.ids(PROCESS) == [the_delivery().pk]
    assert tasks.process_delivery(the_delivery().pk) == f"new {ISSUE_EXT}"
    assert the_delivery().status == DeliveryStatus.PROCESSED and WebhookDelivery.objects.count() == 1
    # Once processed, a redelivery is a duplicate.
    assert deliver("issues", payload, delivery=delivery_id).json() == {"status": "duplicate delivery"}


def test_a_delivery_received_while_the_broker_is_down_is_answered_and_swept_later(
    source: GithubSource, broker: BrokerQueue, broker_down: None, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver("issues", labeled_issue())
    assert response.status_code == 202
    assert the_delivery().status == DeliveryStatus.RECEIVED
    celery_app.conf.broker_url = django_settings.CELERY_BROKER_URL  # Redis is back
    celery_app._pool, celery_app.amqp._producer_pool = None, None
    assert tasks.sweep_stale()["deliveries"] == {"requeued": 0, "failed": 0}  # not overdue yet
    overdue = timezone.now() - timedelta(seconds=django_settings.JOB_REQUEUE_SECONDS + 1)
    WebhookDelivery.objects.update(queued_at=overdue)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep_stale()["deliveries"] == {"requeued": 1, "failed": 0}
    assert broker.ids(PROCESS) == [the_delivery().pk]
    assert tasks.process_delivery(the_delivery().pk) == f"new {ISSUE_EXT}"


def test_a_delivery_whose_worker_died_is_taken_back_then_failed_when_out_of_attempts(
    source: GithubSource, broker: BrokerQueue, django_capture_on_commit_callbacks
) -> None:
    deliver("issues", labeled_issue())
    long_ago = timezone.now() - timedelta(minutes=11)
    WebhookDelivery.objects.update(status=DeliveryStatus.PROCESSING, attempts=1, claimed_at=long_ago)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep_stale()["deliveries"] == {"requeued": 1, "failed": 0}
    delivery = the_delivery()
    assert delivery.status == DeliveryStatus.RECEIVED and "its worker was lost" in delivery.error
    assert broker.ids(PROCESS) == [delivery.pk]
    WebhookDelivery.objects.update(status=DeliveryStatus.PROCESSING, attempts=MAX_ATTEMPTS, claimed_at=long_ago)
    assert tasks.sweep_stale()["deliveries"] == {"requeued": 0, "failed": 1}
    assert the_delivery().status == DeliveryStatus.FAILED


def test_a_redelivery_of_a_stuck_delivery_processes_it(source: GithubSource) -> None:
    payload, delivery_id = labeled_issue(), str(uuid.uuid4())
    deliver("issues", payload, delivery=delivery_id)
    WebhookDelivery.objects.update(status=DeliveryStatus.PROCESSING, claimed_at=timezone.now() - timedelta(hours=1))
    assert deliver("issues", payload, delivery=delivery_id).status_code == 202
    assert tasks.process_delivery(the_delivery().pk) == f"new {ISSUE_EXT}"
    # One in hand (claimed just now) is left to its worker.
    WebhookDelivery.objects.update(status=DeliveryStatus.PROCESSING, claimed_at=timezone.now())
    assert deliver("issues", payload, delivery=delivery_id).status_code == 200


# --- delivery ids and bodies ------------------------------------------------------------------------------


def test_long_delivery_ids_with_a_common_prefix_are_two_deliveries(source: GithubSource) -> None:
    prefix = "relay-" + "0" * 140
    first, second = labeled_issue(), labeled_issue(number=31)
    assert deliver("issues", first, delivery=f"{prefix}-a").status_code == 202
    assert deliver("issues", second, delivery=f"{prefix}-b").status_code == 202
    assert sorted(WebhookDelivery.objects.values_list("delivery_id", flat=True)) == [f"{prefix}-a", f"{prefix}-b"]
    results = [tasks.process_delivery(pk) for pk in WebhookDelivery.objects.order_by("pk").values_list("pk", flat=True)]
    assert results == [f"new {ISSUE_EXT}", "new 127.0.0.1/IEIT-Yuan/Yuan-2.0#31"]


def test_a_delivery_id_too_long_to_store_whole_is_refused(source: GithubSource) -> None:
    response = deliver("issues", labeled_issue(), delivery="d" * 256)
    assert response.status_code == 400 and "longer than 255" in response.json()["error"]
    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(source: GithubSource, constant: str) -> None:
    raw = json.dumps(labeled_issue()).replace('"number": 30', f'"number": 30, "score": {constant}').encode()
    response = deliver("issues", None, raw=raw)
    assert response.status_code == 400 and constant.lstrip("-") in response.json()["error"]
    assert not WebhookDelivery.objects.exists()


def test_nul_and_lone_surrogates_in_a_payload_are_stored_without_them(source: GithubSource) -> None:
    raw = json.dumps(labeled_issue(title="古文\u0000断句\ud800")).encode()  # escaped: \\u0000, \\ud800
    assert deliver("issues", None, raw=raw).status_code == 202
    assert the_delivery().payload["issue"]["title"] == "古文断句"
    assert tasks.process_delivery(the_delivery().pk) == f"new {ISSUE_EXT}"


# --- maintainers see failures and retry them ----------------------------------------------------------------


def test_maintainers_see_failed_deliveries_and_process_them_again(
    source: GithubSource, maintainer: User, contributor: User, client_for: Callable[[User], Client],
    broker: BrokerQueue, django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    deliver("issues", labeled_issue(id=None))
    tasks.process_delivery(the_delivery().pk)
    page = client_for(maintainer).get("/github/priorities/").content.decode()
    assert "Webhook deliveries that failed (1)" in page and "payload has no issue id" in page
    retry_url = f"/github/deliveries/{the_delivery().pk}/retry/"
    assert client_for(contributor).post(retry_url).status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        assert client_for(maintainer).post(retry_url).status_code == 302
    delivery = the_delivery()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.RECEIVED, 0)
    assert broker.ids(PROCESS) == [delivery.pk]
    # Not failed any more: a second click is refused with the reason, and nothing changes.
    response = client_for(maintainer).post(retry_url, follow=True)
    assert "is received; only a failed one is processed again." in response.content.decode()


# --- GitHub posts -----------------------------------------------------------------------------------------


@pytest.fixture
def report(source: GithubSource) -> OutgoingComment:
    source_set_options(source=source, report_back=True)
    comment, _ = comment_intent(
        key="release:1:1#12", kind=CommentKind.RELEASE_REPORT, source=source, issue_number=12,
        body="您提交的共训需求已包含在新版本 v2024.02 中。",
    )  # fmt: skip
    return comment


def test_a_post_whose_message_was_lost_is_sent_again(
    report: OutgoingComment, source: GithubSource, github: FakeGithub, broker: BrokerQueue,
    django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    overdue = timezone.now() - timedelta(seconds=django_settings.JOB_REQUEUE_SECONDS + 1)
    OutgoingComment.objects.update(queued_at=overdue)
    source_set_options(source=source, report_back=False)
    assert tasks.sweep_stale()["comments"] == {"requeued": 0, "failed": 0}  # switched off: left alone
    source_set_options(source=source, report_back=True)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep_stale()["comments"] == {"requeued": 1, "failed": 0}
    assert broker.ids("ghsync.tasks.post_comment") == [report.pk]
    assert tasks.sweep_stale()["comments"] == {"requeued": 0, "failed": 0}  # queued again just now
    assert tasks.post_comment(report.pk) == CommentStatus.POSTED and len(github.posted) == 1


def test_github_unavailable_is_retried_later_and_a_refusal_fails_for_a_maintainer_to_retry(
    report: OutgoingComment, github: FakeGithub, maintainer: User, client_for: Callable[[User], Client],
    broker: BrokerQueue, settings, django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    settings.GITHUB_MAX_WAIT_SECONDS = 0  # GitHub's errors end the attempt at once instead of waiting in it
    github.fail_next(r"/issues/12/comments$", 502, "Server Error")
    with pytest.raises(Retry):
        tasks.post_comment(report.pk)
    report.refresh_from_db()
    assert report.status == CommentStatus.PENDING and report.queued_at > timezone.now()
    assert report.last_error.startswith("GithubUnavailable")
    github.fail_next(r"/issues/12/comments$", 403, "Resource not accessible by integration")
    assert tasks.post_comment(report.pk) == CommentStatus.FAILED
    report.refresh_from_db()
    assert "Resource not accessible by integration" in report.last_error and github.posted == []
    page = client_for(maintainer).get("/github/priorities/").content.decode()
    assert "GitHub posts that failed (1)" in page and "Resource not accessible" in page
    with django_capture_on_commit_callbacks(execute=True):
        client_for(maintainer).post(f"/github/comments/{report.pk}/retry/")
    assert broker.ids("ghsync.tasks.post_comment") == [report.pk]
    assert tasks.post_comment(report.pk) == CommentStatus.POSTED and len(github.posted) == 1

