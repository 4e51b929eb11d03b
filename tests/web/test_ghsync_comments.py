"""Writing to GitHub: one "please add an example" comment, and reporting a release back (idempotent, crash-safe)."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from accounts.models import User
from curation.models import BatchCase, BatchStatus, DatasetBatch, DatasetVersion, DatasetVersionStatus
from ghsync import tasks
from ghsync.client import RetryPolicy
from ghsync.models import CommentStatus, GithubSource, OutgoingComment
from ghsync.services import SyncSummary, comment_post, report_release, source_client, source_set_options
from intake.models import CaseStatus, FeedbackCase
from intake.services import case_transition
from releases.models import Release, ReleaseStatus
from training.models import Evaluation, EvaluationStatus, RunStatus, TrainingRun

from .ghsync_support import *  # noqa: F403 - the fixtures: github, clock, source, sync
from .ghsync_support import REPO, BrokerQueue
from .github_fake import FakeGithub

pytestmark = pytest.mark.django_db
EXT = "127.0.0.1/IEIT-Yuan/Yuan-2.0"


def by_ext(suffix: str) -> FeedbackCase:
    return FeedbackCase.objects.get(external_id=f"{EXT}{suffix}")


def test_asking_is_off_until_enabled_and_then_posts_once(sync: Callable[..., SyncSummary], github: FakeGithub,
                                                          source: GithubSource) -> None:  # fmt: skip
    sync()
    assert tasks.ask_for_examples(source.pk) == 0 and github.posted == []
    source_set_options(source=source, ask_for_examples=True)
    assert tasks.ask_for_examples(source.pk) == 2  # comment 1842200108 and issue #18 have no example
    assert tasks.ask_for_examples(source.pk) == 0
    reply, on_issue = sorted(github.posted, key=lambda c: c["number"])
    assert reply["number"] == 1 and reply["body"].startswith("@sunnyday-dev 感谢您参与源大模型共训计划")
    assert "issuecomment-1842200108" in reply["body"] and "<!-- cotrain:ask-example:" in reply["body"]
    assert on_issue["number"] == 18 and not on_issue["body"].startswith("@")
    # Our own comments come back in the next sync: they are not requests.
    summary = sync(full=True)
    assert summary.new == 0 and summary.skipped["posted by cotrain"] == 1  # the reply on the tracking issue


@pytest.fixture
def release(sync: Callable[..., SyncSummary], maintainer: User) -> Release:
    """A published release whose batch holds five GitHub cases, evaluated on two of them."""
    sync()
    cases = [by_ext(s) for s in ("#12", "#1/comment-1842200102", "#1/comment-1842200114", "#1/comment-1842200104",
                                 "#15")]  # fmt: skip
    batch = DatasetBatch.objects.create(name="plan-2024-02", status=BatchStatus.APPROVED, created_by=maintainer)
    for position, case in enumerate(cases):
        case = case_transition(case=case, to_status=CaseStatus.ACCEPTED, actor=maintainer)
        for status in (CaseStatus.IN_BATCH, CaseStatus.TRAINED, CaseStatus.RELEASED):
            case = case_transition(case=case, to_status=status, actor=None)
        BatchCase.objects.create(batch=batch, case=case, position=position)
    version = DatasetVersion.objects.create(batch=batch, status=DatasetVersionStatus.READY)
    run = TrainingRun.objects.create(dataset_version=version, base_checkpoint="demo", status=RunStatus.SUCCEEDED)
    poem = cases[1]
    Evaluation.objects.create(run=run, status=EvaluationStatus.PASSED, per_case=[
        {"id": f"case-{poem.pk}", "prompt": poem.prompt, "reference": poem.expected_output,
         "base": {"prediction": "这首诗写的是月亮。", "exact_match": 0.0, "chrf": 12.5, "loss": 2.1},
         "tuned": {"prediction": "《静夜思》借明月寄托思乡之情。", "exact_match": 0.0, "chrf": 61.0, "loss": 0.9},
         "delta_chrf": 48.5},
    ])  # fmt: skip
    return Release.objects.create(tag="yuan2-2b-cotrain-2024-02", run=run, status=ReleaseStatus.PUBLISHED,
                                  published_at=timezone.now())  # fmt: skip


def test_dry_run_shows_what_would_be_posted_and_writes_nothing(release: Release, github: FakeGithub) -> None:
    github.requests.clear()
    plans = report_release(release=release, dry_run=True)
    targets = sorted(
        (plan.issue_number, plan.key.rsplit(":", 1)[-1] if plan.issue_number == 1 else "") for plan in plans
    )
    # One comment per intake issue; on the tracking issue one reply per requester.
    assert targets == [(1, "linxi2023"), (1, "wangyx-nlp"), (12, ""), (15, "")]
    wang = next(plan for plan in plans if plan.key.endswith(":wangyx-nlp"))
    assert wang.body.startswith("@wangyx-nlp 您提交的共训需求已包含在新版本 **yuan2-2b-cotrain-2024-02** 中")
    assert "/releases/yuan2-2b-cotrain-2024-02/" in wang.body
    assert "古诗词鉴赏" in wang.body and "文言文翻译" in wang.body  # both of wang's requests, one reply
    assert "发布前 Before: 这首诗写的是月亮。 (chrF 12.5)" in wang.body
    assert "发布后 After: 《静夜思》借明月寄托思乡之情。 (chrF 61.0)" in wang.body
    assert "used for training; not in the held-out evaluation" in wang.body  # 文言文翻译 was not evaluated
    form = next(plan for plan in plans if plan.issue_number == 12)
    assert form.labels == ["co-training: released"] and wang.labels == []
    assert not any(plan.enabled for plan in plans)
    assert github.requests == [] and not OutgoingComment.objects.exists()


def test_reporting_is_off_by_default(release: Release, github: FakeGithub) -> None:
    assert report_release(release=release) == []
    assert github.posted == [] and not OutgoingComment.objects.exists()


def post_all(source: GithubSource) -> None:
    client = source_client(source=source, policy=RetryPolicy(sleep=lambda s: None))
    for pk in OutgoingComment.objects.order_by("pk").values_list("pk", flat=True):
        comment_post(comment_id=pk, client=client)


def test_report_posts_once_per_issue_with_label_and_never_twice(
    release: Release, github: FakeGithub, source: GithubSource, broker: BrokerQueue,
    django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    source_set_options(source=source, report_back=True)
    with django_capture_on_commit_callbacks(execute=True):
        intents = report_release(release=release)
    queued = broker.ids("ghsync.tasks.post_comment")
    assert len(intents) == 4 and sorted(queued) == sorted(c.pk for c in intents)
    for pk in queued:
        tasks.post_comment(pk)  # the task body, as a worker runs it
    assert len(github.posted) == 4
    assert {c["number"] for c in github.posted} == {1, 12, 15}
    assert sorted(github.labels_added) == [(REPO, 12, ["co-training: released"]), (REPO, 15, ["co-training: released"])]
    assert set(OutgoingComment.objects.values_list("status", flat=True)) == {CommentStatus.POSTED}
    # Publishing hooks may call it again, and tasks may be redelivered: nothing more is posted.
    with django_capture_on_commit_callbacks(execute=True):
        report_release(release=release)
    for pk in queued:
        tasks.post_comment(pk)
    assert len(github.posted) == 4


def test_a_crash_after_posting_is_reconciled_not_reposted(
    release: Release, github: FakeGithub, source: GithubSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_set_options(source=source, report_back=True)
    report_release(release=release)
    comment = OutgoingComment.objects.get(issue_number=12)
    client = source_client(source=source, policy=RetryPolicy(sleep=lambda s: None))

    def crash(**kwargs: object) -> None:
        raise ConnectionResetError("worker lost between posting and recording")

    monkeypatch.setattr(client, "add_labels", crash)
    with pytest.raises(ConnectionResetError):
        comment_post(comment_id=comment.pk, client=client)
    assert len(github.posted) == 1
    comment.refresh_from_db()
    assert (comment.status, comment.attempts) == (CommentStatus.PENDING, 1)
    monkeypatch.undo()
    retried = comment_post(comment_id=comment.pk, client=source_client(source=source))
    assert retried.status == CommentStatus.POSTED and retried.attempts == 2
    assert len(github.posted) == 1  # found by its marker on GitHub, not posted again
    assert retried.github_comment_id == github.posted[0]["id"]


def test_a_held_lease_keeps_a_second_worker_out(release: Release, github: FakeGithub, source: GithubSource) -> None:
    source_set_options(source=source, report_back=True)
    report_release(release=release)
    comment = OutgoingComment.objects.get(issue_number=12)
    OutgoingComment.objects.filter(pk=comment.pk).update(
        attempts=1, claimed_at=timezone.now()
    )
    assert comment_post(comment_id=comment.pk, client=source_client(source=source)).status == CommentStatus.PENDING
    assert github.posted == []
    # The worker died: once its lease runs out the next attempt looks on GitHub first, then posts.
    timeout = timedelta(seconds=django_settings.GITHUB_POST_TIMEOUT_SECONDS)
    OutgoingComment.objects.filter(pk=comment.pk).update(claimed_at=timezone.now() - timeout - timedelta(seconds=1))
    assert comment_post(comment_id=comment.pk, client=source_client(source=source)).status == CommentStatus.POSTED
    assert len(github.posted) == 1


def test_unpublished_release_reports_nothing(release: Release, github: FakeGithub, source: GithubSource) -> None:
    source_set_options(source=source, report_back=True)
    Release.objects.filter(pk=release.pk).update(status=ReleaseStatus.PUBLISHING)
    release.refresh_from_db()
    assert report_release(release=release) == []


def test_report_command_dry_run_prints_the_comments(release: Release, github: FakeGithub, capsys: Any) -> None:
    from django.core.management import call_command

    github.requests.clear()
    call_command("report_github_release", release.tag, "--dry-run")
    out = capsys.readouterr().out
    assert "--- IEIT-Yuan/Yuan-2.0#12 (reporting off for this source)" in out
    assert "@wangyx-nlp 您提交的共训需求已包含在新版本" in out and "[labels: co-training: released]" in out
    assert github.requests == [] and not OutgoingComment.objects.exists()
