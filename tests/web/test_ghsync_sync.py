"""Sync through PyGithub against the local GitHub: cases, needs-info, skips, edits, deletions, paging, limits."""

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from ghsync.models import GithubItem, GithubSource, ItemState
from ghsync.services import SyncSummary
from intake.models import CaseEvent, CaseSource, CaseStatus, FeedbackCase

from .ghsync_support import *  # noqa: F403 - the fixtures: github, clock, source, sync
from .ghsync_support import REPO, FakeClock
from .github_fake import FakeGithub, load_fixture

pytestmark = pytest.mark.django_db
Sync = Callable[..., SyncSummary]
EXT = "127.0.0.1/IEIT-Yuan/Yuan-2.0"


def case_for(comment_id: int) -> FeedbackCase:
    return FeedbackCase.objects.get(external_id=f"{EXT}#1/comment-{comment_id}")


def test_first_sync_makes_one_case_per_request(sync: Sync, github: FakeGithub) -> None:
    summary = sync()
    # 11 tracking-issue requests (one prose: needs info) + 3 intake issues (one without an example).
    assert summary.new == 14
    assert summary.skipped == {
        "maintainer post (MEMBER)": 1,
        "maintainer post (COLLABORATOR)": 1,
        "not a request (no example, no request words)": 3,
        "posted by a bot": 1,
        "pull request": 1,
    }
    assert not summary.errors and not summary.interrupted
    assert FeedbackCase.objects.filter(source=CaseSource.GITHUB).count() == 14

    poem = case_for(1842200102)
    assert poem.scenario == "古诗词鉴赏"
    assert poem.prompt == "请赏析李白的《静夜思》。"
    assert poem.expected_output.startswith("《静夜思》借明月寄托思乡之情")
    assert poem.status == CaseStatus.NEW
    assert poem.author is None and poem.author_name == "wangyx-nlp"
    assert poem.source_url == "https://github.com/IEIT-Yuan/Yuan-2.0/issues/1#issuecomment-1842200102"
    assert poem.created_at == datetime(2023, 12, 6, 9, 12, 33, tzinfo=UTC)
    assert poem.license_consent and poem.language == "zh"

    sql = GithubItem.objects.get(external_id=f"{EXT}#1/comment-1842200104")
    assert len(sql.parsed["examples"]) == 3 and sql.body.startswith("希望源2.0增强 Text-to-SQL")
    assert sql.case.scenario == "希望源2.0增强 Text-to-SQL 能力，目前多表关联经常写错"
    assert sql.plus_one == 21

    prose = case_for(1842200108)
    assert prose.status == CaseStatus.NEEDS_INFO
    assert prose.prompt.startswith("希望源2.0能提升长文本摘要能力")
    assert "example needed" in prose.expected_output

    form = FeedbackCase.objects.get(external_id=f"{EXT}#12")
    assert (form.scenario, form.bad_output, form.model_version) == (
        "合同条款抽取：从合同文本中抽取付款期限和金额", "甲方需要付款。", "Yuan2-2B-Mars-hf",
    )  # fmt: skip
    assert form.source_url == "https://github.com/IEIT-Yuan/Yuan-2.0/issues/12"
    assert len(form.github_item.parsed["examples"]) == 2
    untitled = FeedbackCase.objects.get(external_id=f"{EXT}#18")
    assert (untitled.scenario, untitled.status) == ("数学应用题经常算错", CaseStatus.NEEDS_INFO)
    english = FeedbackCase.objects.get(external_id=f"{EXT}#15")
    assert english.language == "en" and english.scenario == "explain SQL queries in plain English"


def test_sync_only_reads_and_follows_pagination(sync: Sync, github: FakeGithub) -> None:
    for i in range(250):
        github.add_comment(REPO, 1, {**load_fixture("tracking_comments.json")[1], "id": 1900000000 + i,
                                     "body": f"场景需求：加法\n输入：{i}+1=?\n输出：{i + 1}"})  # fmt: skip
    summary = sync()
    assert summary.new == 14 + 250
    assert github.writes() == []
    comment_pages = [r for r in github.requests if r.path.endswith("/issues/1/comments")]
    assert len(comment_pages) == 3  # 267 comments, 100 a page, the 2nd and 3rd from Link headers
    assert comment_pages[0].query["per_page"] == "100" and comment_pages[1].query["page"] == "2"


def test_running_sync_twice_creates_nothing_new(sync: Sync, github: FakeGithub) -> None:
    sync()
    events = CaseEvent.objects.count()
    again = sync(full=True)
    assert (again.new, again.updated, again.withdrawn) == (0, 0, 0)
    assert again.unchanged == 21  # 14 cases and 7 posts that are not requests
    assert FeedbackCase.objects.count() == 14 and CaseEvent.objects.count() == events


def test_incremental_sync_asks_since_the_cursor(sync: Sync, github: FakeGithub) -> None:
    sync()
    source = GithubSource.objects.get()
    assert source.cursors["comments:1"] == "2024-01-16T00:00:00+00:00"
    assert source.cursors["issues:co-training"] == "2024-01-26T03:00:00+00:00"
    github.requests.clear()
    github.edit_comment(REPO, 1842200102, body="场景需求：古诗词鉴赏\n输入：请赏析《静夜思》\n输出：借月思乡。",
                        updated_at="2024-02-10T00:00:00Z")  # fmt: skip
    summary = sync()
    assert summary.updated == 1 and summary.new == 0
    listing = next(r for r in github.requests if r.path.endswith("/issues/1/comments"))
    assert listing.query["since"] == "2024-01-16T00:00:00Z"


def test_edit_updates_the_case_and_keeps_history(sync: Sync, github: FakeGithub) -> None:
    sync()
    body = "场景需求：古诗词鉴赏\n输入：请赏析杜甫的《春望》。\n输出：《春望》抒发忧国之情。"
    github.edit_comment(REPO, 1842200102, body=body, updated_at="2024-02-10T00:00:00Z")
    sync()
    case = case_for(1842200102)
    assert case.prompt == "请赏析杜甫的《春望》。"
    edit = CaseEvent.objects.get(case=case, action="edited")
    assert edit.changes["prompt"] == {"from": "请赏析李白的《静夜思》。", "to": "请赏析杜甫的《春望》。"}
    assert "issuecomment-1842200102" in edit.note


def test_adding_an_example_moves_needs_info_to_new(sync: Sync, github: FakeGithub) -> None:
    sync()
    body = "希望源2.0能提升长文本摘要能力。\n\n输入：（一篇3000字的技术文档）\n输出：三点结论：……"
    github.edit_comment(REPO, 1842200108, body=body, updated_at="2024-02-11T00:00:00Z")
    summary = sync()
    case = case_for(1842200108)
    assert case.status == CaseStatus.NEW and case.expected_output == "三点结论：……"
    assert summary.updated == 1
    assert list(case.events.values_list("action", "to_status")) == [
        ("imported", "needs-info"), ("edited", ""), ("status", "new"),
    ]  # fmt: skip


def test_deleted_comment_withdraws_its_case_on_the_full_pass(sync: Sync, github: FakeGithub) -> None:
    sync()
    github.delete_comment(REPO, 1842200103)
    assert sync().withdrawn == 0  # an incremental listing cannot see a deletion
    summary = sync(full=True)
    assert summary.withdrawn == 1
    case = case_for(1842200103)
    assert case.status == CaseStatus.WITHDRAWN and "Deleted on GitHub" in case.status_reason
    assert GithubItem.objects.get(case=case).state == ItemState.DELETED
    assert sync(full=True).withdrawn == 0


def test_deleted_issue_answers_410_and_withdraws(sync: Sync, github: FakeGithub) -> None:
    sync()
    github.delete_issue(REPO, 15)
    assert sync(full=True).withdrawn == 1
    assert FeedbackCase.objects.get(external_id=f"{EXT}#15").status == CaseStatus.WITHDRAWN
    assert any(r.path.endswith("/issues/15") for r in github.requests)


def test_thumbs_up_are_votes_and_reporters_rank_higher(sync: Sync, github: FakeGithub) -> None:
    sync()
    # wangyx-nlp reported two problems; linxi2023 two; sunnyday-dev two (one needs info); amy-ml two.
    poem, one_reporter = case_for(1842200102), case_for(1842200107)  # zhoulaoshi: 2 reports, 0 👍
    assert poem.priority == 2 * 10 + 12
    assert one_reporter.priority == 2 * 10 + 0
    github.set_plus_one(REPO, comment_id=1842200107, count=40)
    sync(full=True)
    assert case_for(1842200107).priority == 2 * 10 + 40


def test_primary_rate_limit_waits_for_the_reset(sync: Sync, github: FakeGithub, clock: FakeClock) -> None:
    github.rate_remaining = 2  # the issues page, then the first comments page
    github.rate_reset = int(clock.now) + 120
    for i in range(150):
        github.add_comment(REPO, 1, {**load_fixture("tracking_comments.json")[1], "id": 1900000000 + i,
                                     "body": f"场景需求：加法\n输入：{i}+2=?\n输出：{i + 2}"})  # fmt: skip
    summary = sync()
    assert summary.new == 14 + 150 and not summary.interrupted
    assert clock.slept == [121.0]  # waited until X-RateLimit-Reset (+1 s), then went on
    assert [r.query.get("page") for r in github.requests if r.path.endswith("/comments")] == [None, "2"]


def test_rate_limit_hit_in_the_middle_answers_403_and_is_retried(
    sync: Sync, github: FakeGithub, clock: FakeClock
) -> None:
    for i in range(150):
        github.add_comment(REPO, 1, {**load_fixture("tracking_comments.json")[1], "id": 1900000000 + i,
                                     "body": f"场景需求：加法\n输入：{i}+3=?\n输出：{i + 3}"})  # fmt: skip
    # The first page of comments is read and stored; the second answers 403 (limit used up elsewhere).
    reset = str(int(clock.now) + 30)
    github.fail_next(r"/issues/1/comments$", 403, "API rate limit exceeded for user ID 1.", query={"page": "2"},
                     headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})  # fmt: skip
    summary = sync()
    assert summary.new == 14 + 150
    assert clock.slept == [31.0]
    assert FeedbackCase.objects.count() == 14 + 150


def test_secondary_limit_429_and_5xx_back_off(sync: Sync, github: FakeGithub, clock: FakeClock) -> None:
    github.fail_next(r"/issues$", 429, "You have exceeded a secondary rate limit.", headers={"Retry-After": "7"})
    github.fail_next(r"/issues$", 403, "You have exceeded a secondary rate limit. Please wait a few minutes.")
    github.fail_next(r"/issues/1/comments", 502, "Server Error")
    github.fail_next(r"/issues/1/comments", 503, "Service Unavailable")
    summary = sync()
    assert summary.new == 14
    assert clock.slept == [7.0, 120.0, 1.0, 2.0]  # Retry-After; a minute, doubled on the 2nd try; 1 s, 2 s


def test_dropped_connection_is_retried(sync: Sync, github: FakeGithub, clock: FakeClock) -> None:
    github.fail_next(r"/issues/1/comments", 500, mode="drop")
    assert sync().new == 14
    assert clock.slept == [1.0]


def test_github_down_stops_the_sync_and_the_next_one_resumes(sync: Sync, github: FakeGithub, clock: FakeClock) -> None:
    github.fail_next(r"/issues/1/comments", 502, "Bad Gateway", times=6)
    summary = sync()
    assert summary.interrupted and "HTTP 502" in summary.interrupted
    assert summary.new == 3  # the intake issues were stored before the comments failed
    assert "comments:1" not in GithubSource.objects.get().cursors
    assert sync().new == 11


def test_wait_longer_than_allowed_stops(sync: Sync, github: FakeGithub, clock: FakeClock) -> None:
    github.fail_next(r"/issues$", 403, "API rate limit exceeded", headers={
        "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(clock.now) + 86400)})  # fmt: skip
    summary = sync()
    assert "would wait" in summary.interrupted and clock.slept == []


def test_command_creates_the_source_and_prints_a_summary(db: None, github: FakeGithub, capsys) -> None:
    call_command("sync_github", "--repo", REPO, "--label", "co-training", "--tracking-issue", "1")
    out = capsys.readouterr().out
    assert "Created source IEIT-Yuan/Yuan-2.0" in out
    assert "new: 14, updated: 0, withdrawn: 0" in out
    assert "skipped 1: pull request" in out and "maintainer post (MEMBER)" in out
    source = GithubSource.objects.get()
    assert (source.intake_labels, source.tracking_issues) == (["co-training"], [1])
    call_command("sync_github", "--since", "2024-01-01T00:00:00Z")
    assert "new: 0" in capsys.readouterr().out


def test_command_rejects_a_bad_since(db: None, github: FakeGithub) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="ISO time"):
        call_command("sync_github", "--repo", REPO, "--since", "last tuesday")


def test_enterprise_base_url_prefix(db: None, settings) -> None:
    from ghsync.client import RetryPolicy
    from ghsync.services import source_client, source_create_or_update, source_sync

    from .github_fake import FakeGithubServer

    with FakeGithubServer(FakeGithub(prefix="/api/v3")) as server:
        server.fake.load_yuan(REPO)
        source, _ = source_create_or_update(repo=REPO, api_url=server.base_url, tracking_issues=[1])
        client = source_client(source=source, policy=RetryPolicy(sleep=lambda s: None))
        summary = source_sync(source=source, client=client)
    assert summary.new == 11
    assert all(r.path.startswith("/api/v3/repos/") for r in server.fake.requests)
    assert FeedbackCase.objects.filter(external_id__startswith="127.0.0.1/IEIT-Yuan/Yuan-2.0#1/").count() == 11


def test_issue_form_without_consent_is_skipped(sync: Sync, github: FakeGithub) -> None:
    form = load_fixture("intake_issues.json")[0]
    body = form["body"].replace("- [x] 我同意", "- [ ] 我同意")
    github.add_issue(REPO, {**form, "number": 40, "id": 2010000040, "body": body, "updated_at": "2024-02-01T00:00:00Z"})
    summary = sync()
    assert summary.skipped["no license consent"] == 1
    assert not FeedbackCase.objects.filter(external_id=f"{EXT}#40").exists()


def test_servers_without_reaction_summaries_are_asked_for_reactions(sync: Sync, github: FakeGithub) -> None:
    # Older GitHub Enterprise servers send no `reactions` in issue and comment payloads.
    github.set_plus_one(REPO, comment_id=1842200114, count=3)
    for comment in github.comments[REPO].values():
        comment.pop("reactions", None)
    sync()
    assert GithubItem.objects.get(external_id=f"{EXT}#1/comment-1842200114").plus_one == 3
    assert any(r.path.endswith("/comments/1842200114/reactions") for r in github.requests)
