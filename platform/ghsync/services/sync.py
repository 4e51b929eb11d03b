"""Reading a source: its intake-labelled issues and its tracking issues' comments.

Incremental: each stream ("issues:<label>", "comments:<number>") remembers the newest
`updated_at` it has read and asks GitHub `since` then. Its cursor moves only when
the stream was read to the end, so a sync stopped by a rate limit reads the rest
next time (what it already stored is found again and left unchanged).

A listing with `since` cannot show deletions (a deleted comment is simply gone) nor
new 👍 (reactions do not change `updated_at`), so a full pass, every
`FULL_PASS_EVERY` or when asked, lists everything: it refreshes the 👍 counts and
withdraws the cases whose comment or issue no longer exists. Sync only reads GitHub.
"""

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ghsync.client import GithubClient, GithubGone, GithubUnavailable
from ghsync.models import GithubItem, GithubSource, ItemKind
from ghsync.services.items import Outcome, item_mark_deleted, item_set_plus_one, item_upsert, items_upsert_many
from ghsync.services.priority import priorities_refresh

FULL_PASS_EVERY = timedelta(hours=24)
CHUNK = 100  # items stored per transaction (one page)


@dataclass
class SyncSummary:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    full_pass: bool = False
    interrupted: str = ""
    requests: int = 0
    waited_seconds: float = 0.0
    logins: set[str] = field(default_factory=set)

    def add(self, outcome: Outcome) -> None:
        if outcome.action == "skipped":
            self.skipped[outcome.reason] += 1
        else:
            setattr(self, outcome.action, getattr(self, outcome.action) + 1)
        if outcome.action in ("new", "updated", "withdrawn"):
            self.logins.add(outcome.author_login)

    def as_dict(self) -> dict[str, Any]:
        return {
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "withdrawn": self.withdrawn,
            "skipped": dict(self.skipped),
            "errors": self.errors,
            "full_pass": self.full_pass,
            "interrupted": self.interrupted,
            "requests": self.requests,
            "waited_seconds": round(self.waited_seconds, 1),
        }

    def lines(self) -> list[str]:
        out = [
            f"new: {self.new}, updated: {self.updated}, withdrawn: {self.withdrawn}, "
            f"unchanged: {self.unchanged}, skipped: {sum(self.skipped.values())}"
        ]
        out += [f"  skipped {count}: {reason}" for reason, count in self.skipped.most_common()]
        out += [f"  error: {error}" for error in self.errors]
        if self.interrupted:
            out.append(f"  stopped early (the next sync resumes): {self.interrupted}")
        out.append(f"{self.requests} GitHub requests, waited {self.waited_seconds:.1f} s")
        return out


def _chunks(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _store(
    *,
    source: GithubSource,
    kind: str,
    payloads: Iterable[dict[str, Any]],
    summary: SyncSummary,
    client: GithubClient,
    number: int | None = None,
) -> tuple[datetime | None, set[int]]:
    """Store every payload; returns the newest updated_at read and the GitHub ids seen."""
    newest: datetime | None = None
    seen: set[int] = set()
    for chunk in _chunks(payloads, CHUNK):
        for payload, outcome in zip(
            chunk, _store_page(source=source, kind=kind, chunk=chunk, number=number), strict=True
        ):
            seen.add(payload["id"])
            if isinstance(outcome, Exception):
                summary.errors.append(f"{payload.get('html_url', payload.get('id'))}: {outcome}")
                continue
            summary.add(outcome)
            if "reactions" not in payload and outcome.action in ("new", "updated"):
                _count_reactions(source=source, client=client, kind=kind, payload=payload, outcome=outcome)
            updated = parse_datetime(payload.get("updated_at") or "")
            if updated and (newest is None or updated > newest):
                newest = updated
    return newest, seen


def _store_page(
    *, source: GithubSource, kind: str, chunk: list[dict[str, Any]], number: int | None
) -> list[Outcome | Exception]:
    try:
        with transaction.atomic():
            return list(items_upsert_many(source=source, kind=kind, payloads=chunk, issue_number=number))
    except (IntegrityError, ValidationError, KeyError, ValueError):
        # A webhook stored one of these meanwhile, or one payload is broken: one by one.
        pass
    outcomes: list[Outcome | Exception] = []
    for payload in chunk:
        try:
            with transaction.atomic():
                issue_number = number if number is not None else payload["number"]
                outcomes.append(item_upsert(source=source, kind=kind, payload=payload, issue_number=issue_number))
        except (ValidationError, KeyError, ValueError) as exc:
            outcomes.append(exc)
    return outcomes


def _count_reactions(
    *, source: GithubSource, client: GithubClient, kind: str, payload: dict[str, Any], outcome: Outcome
) -> None:
    # Older GitHub Enterprise servers send no `reactions` summary: ask for the 👍 list.
    item = GithubItem.objects.get(external_id=outcome.external_id)
    if kind == ItemKind.COMMENT:
        count = client.plus_one_count(repo=source.repo, comment_id=payload["id"])
    else:
        count = client.plus_one_count(repo=source.repo, number=payload["number"])
    item_set_plus_one(item_id=item.pk, plus_one=count)


def _since(source: GithubSource, stream: str, since: datetime | None, full: bool) -> datetime | None:
    if full:
        return None
    if since is not None:
        return since
    cursor = source.cursors.get(stream)
    return parse_datetime(cursor) if cursor else None


def _reconcile_comments(*, source: GithubSource, number: int, seen: set[int], summary: SyncSummary) -> None:
    gone = GithubItem.objects.filter(
        source=source, kind=ItemKind.COMMENT, issue_number=number, deleted_at__isnull=True
    ).exclude(github_id__in=seen)
    for item in gone:
        summary.add(_mark_gone(source=source, item=item))


def _reconcile_issues(*, source: GithubSource, client: GithubClient, seen: set[int], summary: SyncSummary) -> None:
    # An issue missing from the label listing may only have lost its label: ask for it.
    candidates = GithubItem.objects.filter(source=source, kind=ItemKind.ISSUE, deleted_at__isnull=True).exclude(
        github_id__in=seen
    )
    for item in candidates:
        try:
            client.issue(repo=source.repo, number=item.issue_number)
        except GithubGone:
            summary.add(_mark_gone(source=source, item=item))


def _mark_gone(*, source: GithubSource, item: GithubItem) -> Outcome:
    return item_mark_deleted(
        source=source, kind=item.kind, issue_number=item.issue_number, github_id=item.github_id, at=timezone.now()
    )


def source_sync(
    *,
    source: GithubSource,
    client: GithubClient,
    labels: list[str] | None = None,
    tracking_issues: list[int] | None = None,
    since: datetime | None = None,
    full: bool | None = None,
) -> SyncSummary:
    """Read the source's intake issues and tracking-issue comments into cases (GitHub is only read)."""
    labels = labels if labels is not None else list(source.intake_labels)
    tracking_issues = tracking_issues if tracking_issues is not None else list(source.tracking_issues)
    last_full = parse_datetime(source.cursors.get("full", "") or "")
    if full is None:
        full = since is None and (last_full is None or timezone.now() - last_full > FULL_PASS_EVERY)
    summary = SyncSummary(full_pass=full)
    cursors = dict(source.cursors)
    started = timezone.now()
    try:
        issue_ids: set[int] = set()
        for label in labels:
            stream = f"issues:{label}"
            payloads = client.issues(repo=source.repo, label=label, since=_since(source, stream, since, full))
            newest, seen = _store(source=source, kind=ItemKind.ISSUE, payloads=payloads, summary=summary, client=client)
            issue_ids |= seen
            _advance(cursors, stream, newest)
        for number in tracking_issues:
            stream = f"comments:{number}"
            payloads = client.issue_comments(repo=source.repo, number=number, since=_since(source, stream, since, full))
            newest, seen = _store(
                source=source, kind=ItemKind.COMMENT, payloads=payloads, summary=summary, client=client, number=number
            )
            _advance(cursors, stream, newest)
            if full:
                _reconcile_comments(source=source, number=number, seen=seen, summary=summary)
        if full and labels == list(source.intake_labels):
            _reconcile_issues(source=source, client=client, seen=issue_ids, summary=summary)
        if full:
            cursors["full"] = started.isoformat()
    except GithubUnavailable as exc:
        summary.interrupted = str(exc)
    finally:
        summary.requests = client.requests_made
        summary.waited_seconds = client.policy.waited
        priorities_refresh(logins=summary.logins | _logins_with_new_votes(source=source, full=full))
        source_record_sync(source=source, cursors=cursors, summary=summary)
    return summary


def _logins_with_new_votes(*, source: GithubSource, full: bool) -> set[str]:
    # A full pass refreshes 👍 counts of unchanged items: their requesters' priorities move too.
    if not full:
        return set()
    return set(GithubItem.objects.filter(source=source, case__isnull=False).values_list("author_login", flat=True))


def _advance(cursors: dict[str, str], stream: str, newest: datetime | None) -> None:
    current = parse_datetime(cursors.get(stream, "") or "")
    if newest is not None and (current is None or newest > current):
        cursors[stream] = newest.isoformat()


def source_record_sync(*, source: GithubSource, cursors: dict[str, str], summary: SyncSummary) -> None:
    source.cursors = cursors
    source.last_synced_at = timezone.now()
    source.last_sync_summary = summary.as_dict()
    source.save(update_fields=["cursors", "last_synced_at", "last_sync_summary"])
