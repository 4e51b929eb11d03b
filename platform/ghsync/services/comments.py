"""Writing to GitHub: asking for a missing example, and reporting a release back.

Both are off until a maintainer enables them for the source, and both go through
the same two steps so that a comment is posted at most once:

1. `comment_intent` records what will be posted under a key that names its purpose
   (`ask-example:<external id>`, `release:<id>:<issue>[:<login>]`); asking again
   finds the same row.
2. `comment_post` claims the row (`POST_JOB`) and counts the attempt in its own
   transaction, then posts. The body carries `<!-- cotrain:KEY -->`: if an earlier attempt may
   have posted and crashed before recording it, the marker is looked for on GitHub
   first, and found rather than posted again.

A post whose message was lost (broker down, worker killed) stays `pending` and is
sent again by the sweeper (`comments_sweep`), as is one whose worker died holding
it; GitHub being unavailable is retried with back-off (`comment_post_run`) until
`MAX_POST_ATTEMPTS`; then, or on an error that would repeat (the issue is gone, the
token may not comment), it is `failed` with its reason, and a maintainer may try it again (`comment_retry`).
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from cotrain_site.jobs import Job, job_claim, job_send, job_sweep
from cotrain_site.transitions import lock_for_transition
from curation.selectors import case_examples, case_pk_for_row
from ghsync.client import MARKER_PREFIX, GithubClient, GithubUnavailable
from ghsync.models import CommentKind, CommentStatus, GithubItem, GithubSource, ItemKind, OutgoingComment
from ghsync.sanitize import github_url
from ghsync.services.sources import source_client, source_web_host
from intake.models import CaseSource, CaseStatus, FeedbackCase
from releases.models import Release, ReleaseStatus

log = logging.getLogger(__name__)
MAX_POST_ATTEMPTS = 8
RETRY_BASE_SECONDS = 60  # 1, 2, 4, ... 64 min between attempts
# GitHub down, rate-limited or unreachable, or the database briefly gone: worth another attempt.
TRANSIENT = (GithubUnavailable, OperationalError, InterfaceError)
# A pending post waits for its message while no attempt holds it; an attempt holds it from its claim until it
# posts or gives it back, and one older than the timeout belongs to a worker that died.
POST_JOB = Job(OutgoingComment, "ghsync.tasks.post_comment",
               waiting=Q(status=CommentStatus.PENDING, claimed_at__isnull=True),
               working=Q(status=CommentStatus.PENDING, claimed_at__isnull=False),
               timeout_setting="GITHUB_POST_TIMEOUT_SECONDS", attempt_field="attempts", beat_field="claimed_at",
               sent_field="queued_at", claim_stale=True)
COMMENT_MOVES = {(CommentStatus.PENDING, CommentStatus.FAILED), (CommentStatus.FAILED, CommentStatus.PENDING)}
# A source's switch for each kind of post: off, nothing of that kind is sent again.
SWITCH = {CommentKind.ASK_EXAMPLE: "ask_for_examples", CommentKind.RELEASE_REPORT: "report_back"}


def marker(key: str) -> str:
    return f"{MARKER_PREFIX}{key} -->"


def comment_intent(
    *,
    key: str,
    kind: str,
    source: GithubSource,
    issue_number: int,
    body: str,
    labels: list[str] | None = None,
    cases: list[FeedbackCase] | None = None,
    release_id: int | None = None,
) -> tuple[OutgoingComment, bool]:
    """The comment to post under `key` (created if new); an existing intent is never rewritten."""
    with transaction.atomic():
        comment, created = OutgoingComment.objects.get_or_create(
            key=key,
            defaults={
                "kind": kind,
                "source": source,
                "issue_number": issue_number,
                "labels": labels or [],
                "body": f"{body}\n\n{marker(key)}",
                "release_id": release_id,
            },
        )
        if created and cases:
            comment.cases.set(cases)
    return comment, created


def _claim(*, comment_id: int) -> OutgoingComment | None:
    # It stays `pending` while an attempt holds it: `claimed_at` says one does.
    return job_claim(POST_JOB, pk=comment_id, claim=POST_JOB.claim_in_place)


def comment_post(*, comment_id: int, client: GithubClient) -> OutgoingComment:
    """Post a pending comment (and add its labels) unless it is posted or another worker holds it."""
    comment = _claim(comment_id=comment_id)
    if comment is None:
        return OutgoingComment.objects.get(pk=comment_id)
    repo = comment.source.repo
    try:
        found = None
        if comment.attempts > 1:
            found = client.find_marked_comment(repo=repo, number=comment.issue_number, marker=marker(comment.key))
        posted = found or client.create_comment(repo=repo, number=comment.issue_number, body=comment.body)
        if comment.labels:
            client.add_labels(repo=repo, number=comment.issue_number, labels=comment.labels)
    except Exception as exc:
        OutgoingComment.objects.filter(pk=comment.pk).update(last_error=str(exc)[:2000], claimed_at=None)
        raise
    comment.status, comment.posted_at = CommentStatus.POSTED, timezone.now()
    comment.github_comment_id = posted["id"]
    comment.html_url = github_url(posted.get("html_url"), host=source_web_host(source=comment.source),
                                  field="html_url", notes=[])  # fmt: skip
    comment.claimed_at, comment.last_error = None, ""
    comment.save(update_fields=["status", "posted_at", "github_comment_id", "html_url", "claimed_at", "last_error"])
    return comment


@dataclass(frozen=True)
class PostRun:
    """What one run of the post task did: the comment's status, and the back-off when it is to be retried."""

    status: str
    retry_in: int | None = None


def comment_post_run(*, comment_id: int) -> PostRun:
    """Post a comment as the task does: a transient error is retried later, any other one fails it."""
    comment = OutgoingComment.objects.select_related("source").get(pk=comment_id)
    try:
        return PostRun(comment_post(comment_id=comment_id, client=source_client(source=comment.source)).status)
    except TRANSIENT as exc:
        delay = comment_retry_later(comment_id=comment_id, error=f"{type(exc).__name__}: {exc}")
        return PostRun(CommentStatus.PENDING if delay is not None else CommentStatus.FAILED, delay)
    except Exception as exc:
        log.exception("posting %s failed", comment.key)
        comment_fail(comment_id=comment_id, error=f"{type(exc).__name__}: {exc}")
        return PostRun(CommentStatus.FAILED)


@transaction.atomic
def comment_fail(*, comment_id: int, error: str) -> None:
    """PENDING -> FAILED with its reason; a maintainer may try again (`comment_retry`)."""
    locked = lock_for_transition(OutgoingComment, pk=comment_id, to_status=CommentStatus.FAILED,
                                 allowed=COMMENT_MOVES, label="Comment {row.key}")  # fmt: skip
    locked.status, locked.last_error, locked.claimed_at = CommentStatus.FAILED, error[:2000], None
    locked.save(update_fields=["status", "last_error", "claimed_at"])


@transaction.atomic
def comment_retry_later(*, comment_id: int, error: str) -> int | None:
    """After a transient error: the next attempt is due after the back-off (seconds); None: failed, out of attempts."""
    locked = OutgoingComment.objects.select_for_update().get(pk=comment_id)
    if locked.status != CommentStatus.PENDING:
        return None
    if locked.attempts >= MAX_POST_ATTEMPTS:
        comment_fail(comment_id=comment_id, error=f"gave up after {locked.attempts} attempts: {error}")
        return None
    delay = RETRY_BASE_SECONDS * 2 ** max(locked.attempts - 1, 0)
    locked.queued_at, locked.last_error = timezone.now() + timedelta(seconds=delay), error[:2000]
    locked.save(update_fields=["queued_at", "last_error"])
    return delay


@transaction.atomic
def comment_retry(*, comment_id: int) -> OutgoingComment:
    """A maintainer's retry of a failed post: pending and queued again (one more attempt, marker looked for first)."""
    locked = lock_for_transition(OutgoingComment, pk=comment_id, to_status=CommentStatus.PENDING,
                                 allowed=COMMENT_MOVES, label="Comment {row.key}")  # fmt: skip
    # One attempt below the limit: a transient error then fails it again rather than retrying for hours.
    locked.status, locked.queued_at = CommentStatus.PENDING, timezone.now()
    locked.attempts = min(locked.attempts, MAX_POST_ATTEMPTS - 1)
    locked.save(update_fields=["status", "queued_at", "attempts"])
    job_send(POST_JOB, locked)
    return locked


def _overdue(comment: OutgoingComment) -> str:
    """The sweeper's move for a pending post whose message was lost or whose worker died (under its lock)."""
    if comment.attempts >= MAX_POST_ATTEMPTS:
        # Its workers kept dying (or its retries were lost): a maintainer decides.
        comment_fail(comment_id=comment.pk, error=f"gave up after {comment.attempts} attempts: {comment.last_error}")
        return "failed"
    if not getattr(comment.source, SWITCH[comment.kind]):
        return ""  # switched off for its source: left as it is until a maintainer turns it on again
    comment.claimed_at = None
    comment.save(update_fields=["claimed_at"])
    job_send(POST_JOB, comment)
    return "requeued"


def comments_sweep() -> dict[str, int]:
    """Periodic: send again the pending posts whose message is overdue, or whose worker died holding them."""
    dead, lost = job_sweep(POST_JOB, on_stale=_overdue, on_lost=_overdue)
    outcomes = dead + lost
    return {"requeued": outcomes.count("requeued"), "failed": outcomes.count("failed")}


# --- asking for an example ---------------------------------------------------------

ASK_BODY = (
    "{mention}感谢您参与源大模型共训计划！为了把这条需求加入训练，我们还需要至少一组**输入**和**期望输出**示例。"
    "请直接编辑{what}（{url}）补充，例如：\n\n"
    "```\n场景需求：……\n输入：……\n输出：……\n```\n\n"
    "Thank you for your request! To use it for training we need at least one example: an **input** and the "
    "**output** you expect. Please edit {what_en} ({url}) to add one; we will pick it up automatically."
)


def ask_for_example_intent(*, item: GithubItem) -> OutgoingComment | None:
    """The one "please add an example" comment for a needs-info request; None when it does not apply."""
    case = item.case
    if not item.source.ask_for_examples or case is None or item.deleted_at is not None:
        return None
    if case.status != CaseStatus.NEEDS_INFO:
        return None
    on_comment = item.kind == ItemKind.COMMENT
    body = ASK_BODY.format(
        mention=f"@{item.author_login} " if on_comment else "",
        what="您的评论" if on_comment else "这个 issue",
        what_en="your comment" if on_comment else "this issue",
        url=item.html_url,
    )
    comment, _ = comment_intent(
        key=f"ask-example:{item.external_id}",
        kind=CommentKind.ASK_EXAMPLE,
        source=item.source,
        issue_number=item.issue_number,
        body=body,
        cases=[case],
    )
    return comment


# --- reporting a release back ----------------------------------------------------------


@dataclass(frozen=True)
class PlannedReport:
    key: str
    source: GithubSource
    issue_number: int
    body: str
    labels: list[str]
    cases: list[FeedbackCase]
    enabled: bool


def _release_url(release: Release) -> str:
    try:
        path = reverse("releases:detail", kwargs={"tag": release.tag})
    except NoReverseMatch:
        path = f"/releases/{release.tag}/"
    return f"{settings.SITE_URL}{path}"


def _per_case(release: Release) -> dict[str, dict[str, Any]]:
    """Evaluation rows of cases by row id (`trainer/evaluate.py` compare rows, ids `case-<pk>`, `case-<pk>-ex<n>`)."""
    evaluation = getattr(release.run, "evaluation", None) if release.run_id else None
    rows: dict[str, dict[str, Any]] = {}
    for row in getattr(evaluation, "per_case", None) or []:
        row_id = str(row.get("id", "")) if isinstance(row, dict) else ""
        if case_pk_for_row(row_id=row_id) is not None:
            rows[row_id] = row
    return rows


def _clip(text: str, limit: int = 300) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _case_lines(case: FeedbackCase, rows: dict[str, dict[str, Any]]) -> list[str]:
    """The case's examples; for each one the release was evaluated on, its answers before and after."""
    examples = case_examples(case=case)
    evaluated = [(number, example) for number, example in enumerate(examples, start=1) if example[0] in rows]
    lines = [f"**{case.scenario}** — {case.source_url}"]
    if not evaluated:
        _row_id, prompt, expected = examples[0]
        lines += ["", f"- 输入 Input: {_clip(prompt)}", f"- 期望输出 Expected: {_clip(expected)}"]
        if len(examples) > 1:
            lines.append(f"- 另有 {len(examples) - 1} 个示例 (and {len(examples) - 1} more examples)")
        lines.append("- 本例用于训练，未单独评测 (used for training; not in the held-out evaluation)")
        return lines
    for number, (row_id, prompt, expected) in evaluated:
        base, tuned = rows[row_id].get("base") or {}, rows[row_id].get("tuned") or {}
        lines += ["", f"示例 {number} / Example {number}:"] if len(examples) > 1 else [""]
        lines += [
            f"- 输入 Input: {_clip(prompt)}",
            f"- 期望输出 Expected: {_clip(expected)}",
            f"- 发布前 Before: {_clip(str(base.get('prediction', '')))} (chrF {base.get('chrf', 0):.1f})",
            f"- 发布后 After: {_clip(str(tuned.get('prediction', '')))} (chrF {tuned.get('chrf', 0):.1f})",
        ]
    if len(evaluated) < len(examples):
        others = len(examples) - len(evaluated)
        lines.append(f"- 其余 {others} 个示例未单独评测 (the other {others} examples were not evaluated)")
    return lines


def _report_body(
    *, release: Release, cases: list[FeedbackCase], rows: dict[str, dict[str, Any]], mention: str
) -> str:
    head = (
        f"{mention}您提交的共训需求已包含在新版本 **{release.tag}** 中：{_release_url(release)}\n\n"
        f"Your co-training request is included in release **{release.tag}**: {_release_url(release)}\n"
    )
    parts = [head]
    for case in cases:
        parts.append("\n".join(_case_lines(case, rows)))
    parts.append(
        "感谢参与！如果效果仍不理想，欢迎继续反馈。 Thank you — if it still falls short, please tell us again."
    )
    return "\n\n".join(parts)


def release_github_cases(*, release: Release) -> list[tuple[FeedbackCase, GithubItem]]:
    batch = release.run.dataset_version.batch
    # A requester who withdrew (or deleted the post) is not told: the case left the loop with them.
    cases = batch.cases.filter(source=CaseSource.GITHUB).exclude(status=CaseStatus.WITHDRAWN).order_by("pk")
    items = {item.case_id: item for item in GithubItem.objects.filter(case__in=cases).select_related("source")}
    return [(case, items[case.pk]) for case in cases if case.pk in items]


def release_report_plan(*, release: Release) -> list[PlannedReport]:
    """One comment per originating issue; on a tracking issue, one reply per requester mentioning them."""
    rows = _per_case(release)
    groups: dict[tuple[int, int, str], list[tuple[FeedbackCase, GithubItem]]] = {}
    for case, item in release_github_cases(release=release):
        login = item.author_login if item.kind == ItemKind.COMMENT else ""
        groups.setdefault((item.source_id, item.issue_number, login), []).append((case, item))
    plans = []
    for (_source_id, number, login), members in groups.items():
        source = members[0][1].source
        key = f"release:{release.pk}:{source.pk}#{number}" + (f":{login}" if login else "")
        body = _report_body(
            release=release, cases=[case for case, _ in members], rows=rows, mention=f"@{login} " if login else ""
        )
        labels = [source.released_label] if source.released_label and not login else []
        plans.append(PlannedReport(key, source, number, body, labels, [c for c, _ in members], source.report_back))
    return plans


def report_release(*, release: Release, dry_run: bool = False) -> list[PlannedReport] | list[OutgoingComment]:
    """Tell the requesters whose GitHub cases a published release includes (call after publishing).

    dry_run: return what would be posted (for every source, enabled or not) and write nothing.
    Otherwise record one intent per originating issue (sources with `report_back` only) and
    enqueue their posting; calling it again finds the same intents and posts nothing twice.
    """
    plans = release_report_plan(release=release)
    if dry_run:
        return plans
    if release.status != ReleaseStatus.PUBLISHED:
        return []
    intents = []
    with transaction.atomic():
        for plan in plans:
            if not plan.enabled:
                continue
            comment, _ = comment_intent(
                key=plan.key,
                kind=CommentKind.RELEASE_REPORT,
                source=plan.source,
                issue_number=plan.issue_number,
                body=plan.body,
                labels=plan.labels,
                cases=plan.cases,
                release_id=release.pk,
            )
            intents.append(comment)
        for comment in intents:
            if comment.status == CommentStatus.PENDING:
                job_send(POST_JOB, comment)
    return intents
