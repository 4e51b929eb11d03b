"""The webhook endpoint: signatures, redeliveries, malformed bodies, out-of-order events (real payload fixtures)."""

import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from ghsync import tasks
from ghsync.models import DeliveryStatus, GithubItem, GithubSource, ItemState, WebhookDelivery
from intake.models import CaseStatus, FeedbackCase

from .ghsync_support import *  # noqa: F403 - the fixtures: github, clock, source, sync
from .ghsync_support import WEBHOOK_SECRET, BrokerQueue
from .github_fake import FakeGithub, load_fixture

pytestmark = pytest.mark.django_db
URL = "/github/webhook/"
COMMENT_EXT = "127.0.0.1/IEIT-Yuan/Yuan-2.0#1/comment-1842200201"
Enqueued = Callable[[], list[object]]


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def enqueued(broker: BrokerQueue) -> Enqueued:
    """The delivery ids of the `process_delivery` messages sent to the broker so far."""
    return lambda: broker.ids("ghsync.tasks.process_delivery")


def deliver(client: Client, event: str, payload: Any, *, delivery: str | None = None, signature: str | None = "ok",
            raw: bytes | None = None) -> Any:  # fmt: skip
    body = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode()
    headers = {"HTTP_X_GITHUB_EVENT": event, "HTTP_X_GITHUB_DELIVERY": delivery or str(uuid.uuid4()),
               "HTTP_USER_AGENT": "GitHub-Hookshot/a1b2c3d"}  # fmt: skip
    if signature == "ok":
        headers["HTTP_X_HUB_SIGNATURE_256"] = sign(body)
    elif signature:
        headers["HTTP_X_HUB_SIGNATURE_256"] = signature
    return client.post(URL, data=body, content_type="application/json", **headers)


def process_all() -> list[str]:
    return [tasks.process_delivery(pk) for pk in WebhookDelivery.objects.order_by("pk").values_list("pk", flat=True)]


def test_ping_is_answered_and_recorded(
    source: GithubSource, enqueued: Enqueued, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(Client(), "ping", load_fixture("webhook_ping.json"))
    assert response.status_code == 202
    assert enqueued() == [WebhookDelivery.objects.get().pk]
    assert process_all() == ["pong"]
    assert tasks.process_delivery(enqueued()[0]) == "nothing to do"  # a second run of the task


@pytest.mark.parametrize(
    ("signature", "status"),
    [
        (None, 401),
        ("sha256=" + "0" * 64, 403),
        ("sha1=abc", 403),
        (sign(b"other body"), 403),
        (sign(b"{}", "wrong"), 403),
    ],
)
def test_unsigned_or_wrongly_signed_requests_are_refused(
    source: GithubSource, signature: str | None, status: int
) -> None:
    response = deliver(
        Client(), "issue_comment", load_fixture("webhook_issue_comment_created.json"), signature=signature
    )
    assert response.status_code == status
    assert not WebhookDelivery.objects.exists()


def test_without_a_configured_secret_everything_is_refused(source: GithubSource, settings) -> None:
    settings.GITHUB_WEBHOOK_SECRET = ""
    assert deliver(Client(), "ping", load_fixture("webhook_ping.json")).status_code == 403


def test_malformed_json_is_a_400_and_stores_nothing(source: GithubSource, enqueued: Enqueued) -> None:
    response = deliver(Client(), "issue_comment", None, raw=b'{"action": "created", "comment": ')
    assert response.status_code == 400
    assert deliver(Client(), "issue_comment", None, raw=b"[1, 2]").status_code == 400
    assert not WebhookDelivery.objects.exists() and enqueued() == []


def test_created_comment_becomes_a_case_in_the_task(source: GithubSource, enqueued: Enqueued) -> None:
    assert deliver(Client(), "issue_comment", load_fixture("webhook_issue_comment_created.json")).status_code == 202
    assert not FeedbackCase.objects.exists()  # the view only stores; the task does the work
    assert process_all() == [f"new {COMMENT_EXT}"]
    case = FeedbackCase.objects.get(external_id=COMMENT_EXT)
    assert (case.scenario, case.status, case.author_name) == ("医疗问诊", CaseStatus.NEW, "zhoulaoshi")
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PROCESSED


def test_redelivery_changes_nothing(
    source: GithubSource, enqueued: Enqueued, django_capture_on_commit_callbacks
) -> None:
    payload = load_fixture("webhook_issue_comment_created.json")
    with django_capture_on_commit_callbacks(execute=True):
        first = deliver(Client(), "issue_comment", payload, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    process_all()
    with django_capture_on_commit_callbacks(execute=True):
        again = deliver(Client(), "issue_comment", payload, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {"status": "duplicate delivery"}
    assert len(enqueued()) == 1 and WebhookDelivery.objects.count() == 1
    assert FeedbackCase.objects.count() == 1


def test_edit_then_create_out_of_order_ends_edited(source: GithubSource, enqueued: Enqueued) -> None:
    deliver(Client(), "issue_comment", load_fixture("webhook_issue_comment_edited.json"))
    deliver(Client(), "issue_comment", load_fixture("webhook_issue_comment_created.json"))
    assert process_all() == [f"new {COMMENT_EXT}", f"skipped {COMMENT_EXT} (older than the stored version)"]
    assert FeedbackCase.objects.get().expected_output.endswith("本回答不能替代医生诊断。")


def test_in_order_edit_updates_with_history(source: GithubSource, enqueued: Enqueued) -> None:
    deliver(Client(), "issue_comment", load_fixture("webhook_issue_comment_created.json"))
    deliver(Client(), "issue_comment", load_fixture("webhook_issue_comment_edited.json"))
    process_all()
    case = FeedbackCase.objects.get()
    assert case.expected_output.endswith("本回答不能替代医生诊断。")
    assert case.events.filter(action="edited").count() == 1


def test_delete_before_create_never_makes_a_case(source: GithubSource, enqueued: Enqueued) -> None:
    deliver(Client(), "issue_comment", load_fixture("webhook_issue_comment_deleted.json"))
    deliver(Client(), "issue_comment", load_fixture("webhook_issue_comment_created.json"))
    deliver(Client(), "issue_comment", load_fixture("webhook_issue_comment_edited.json"))
    process_all()
    assert not FeedbackCase.objects.exists()
    assert GithubItem.objects.get().state == ItemState.DELETED


def test_delete_after_create_withdraws(source: GithubSource, enqueued: Enqueued) -> None:
    deliver(Client(), "issue_comment", load_fixture("webhook_issue_comment_created.json"))
    deliver(Client(), "issue_comment", load_fixture("webhook_issue_comment_deleted.json"))
    deliver(Client(), "issue_comment", load_fixture("webhook_issue_comment_edited.json"))  # late edit
    process_all()
    assert FeedbackCase.objects.get().status == CaseStatus.WITHDRAWN


def test_labeled_issue_becomes_a_case_and_unlabelled_is_ignored(source: GithubSource, enqueued: Enqueued) -> None:
    payload = load_fixture("webhook_issues_labeled.json")
    deliver(Client(), "issues", payload)
    unlabelled = copy.deepcopy(payload)
    unlabelled["issue"]["number"], unlabelled["issue"]["labels"] = 31, []
    deliver(Client(), "issues", unlabelled)
    assert process_all() == ["new 127.0.0.1/IEIT-Yuan/Yuan-2.0#30", "issue #31 has no intake label"]
    assert FeedbackCase.objects.get().scenario == "古文断句"


def test_comment_elsewhere_and_unknown_repository_are_ignored(source: GithubSource, enqueued: Enqueued) -> None:
    elsewhere = load_fixture("webhook_issue_comment_created.json")
    elsewhere["issue"]["number"] = 12
    deliver(Client(), "issue_comment", elsewhere)
    other_repo = load_fixture("webhook_issue_comment_created.json")
    other_repo["repository"]["full_name"] = "someone/else"
    deliver(Client(), "issue_comment", other_repo)
    assert process_all() == ["comment on #12, not a tracking issue", "no source for this repository"]
    assert not FeedbackCase.objects.exists()


def test_webhook_and_sync_agree_on_one_case(source: GithubSource, github: FakeGithub, enqueued: Enqueued) -> None:
    from ghsync.client import RetryPolicy
    from ghsync.services import source_client, source_sync

    payload = load_fixture("webhook_issue_comment_created.json")
    github.add_comment("IEIT-Yuan/Yuan-2.0", 1, payload["comment"])
    deliver(Client(), "issue_comment", payload)
    process_all()
    summary = source_sync(source=source, client=source_client(source=source, policy=RetryPolicy(sleep=lambda s: None)))
    assert summary.new == 14  # the fixtures' requests; the webhook's comment is found unchanged
    assert FeedbackCase.objects.filter(external_id=COMMENT_EXT).count() == 1


def test_deleted_issue_withdraws_its_case(source: GithubSource, enqueued: Enqueued) -> None:
    payload = load_fixture("webhook_issues_labeled.json")
    deliver(Client(), "issues", payload)
    deleted = {**copy.deepcopy(payload), "action": "deleted"}
    deleted.pop("label")
    deliver(Client(), "issues", deleted)
    assert process_all()[1] == "withdrawn 127.0.0.1/IEIT-Yuan/Yuan-2.0#30"
    assert FeedbackCase.objects.get().status == CaseStatus.WITHDRAWN


def test_a_deleted_comment_withdraws_its_case_even_from_a_batch(
    source: GithubSource, enqueued: Enqueued, maintainer
) -> None:
    from curation.services import batch_approve, batch_create
    from intake.services import case_transition

    from .loop_factories import accepted_cases

    deliver(Client(), "issue_comment", load_fixture("webhook_issue_comment_created.json"))
    process_all()
    case = case_transition(case=FeedbackCase.objects.get(), to_status=CaseStatus.ACCEPTED, actor=maintainer)
    other = accepted_cases(author=maintainer, maintainer=maintainer, count=1)[0]  # a batch holds two at least
    batch_approve(batch=batch_create(by=maintainer, name="plan-gh", case_ids=[case.pk, other.pk]), by=maintainer)
    case.refresh_from_db()
    assert case.status == CaseStatus.IN_BATCH
    deliver(Client(), "issue_comment", load_fixture("webhook_issue_comment_deleted.json"))
    process_all()
    case.refresh_from_db()
    # Every later dataset version leaves it out (test_curation.py), as if its author had withdrawn it here.
    assert case.status == CaseStatus.WITHDRAWN and "Deleted on GitHub" in case.status_reason
