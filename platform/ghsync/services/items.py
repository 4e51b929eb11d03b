"""One issue or comment read from GitHub -> its `GithubItem` and its case (the one write path).

Sync and webhooks both end here, with GitHub's JSON for the issue or comment. The
rules that make repeated and reordered reads safe:

- the item is found by its external id, so a second read never makes a second case;
- GitHub's `updated_at` orders versions: an older version than the one stored (a
  late webhook, a page read before an edit) changes nothing;
- a deleted item stays deleted: a tombstone is kept even when the deletion is the
  first thing heard of it, so a late "created" cannot bring it back;
- what GitHub sends is cleaned, never refused for its text (`ghsync.sanitize`: control
  characters removed, fields cut, links off the source's host dropped, a bad timestamp
  read as now), and each change is noted on the item; only a payload without the ids
  that name the item is refused (`PayloadError`).
"""

import re
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ghsync import parsing
from ghsync.client import MARKER_PREFIX
from ghsync.models import GithubItem, GithubSource, ItemKind, ItemState
from ghsync.sanitize import clean_text, cut, github_url
from ghsync.services.sources import source_host_prefix, source_web_host
from intake.models import EXTRA_EXAMPLES_MAX, SCENARIO_MAX, TEXT_MAX, CaseSource, CaseStatus, FeedbackCase
from intake.selectors import EXAMPLE_PLACEHOLDER
from intake.services import (
    CaseImport,
    CaseInput,
    case_import,
    case_transition,
    case_update_from_source,
    cases_import_many,
)

MAINTAINER_ASSOCIATIONS = {"OWNER", "MEMBER", "COLLABORATOR"}
# A case needs an input and an expected output; a request that has none yet keeps its
# own text as the input and this as the output until the requester adds an example.
EXAMPLE_NEEDED = EXAMPLE_PLACEHOLDER
NO_SCENARIO = "未注明场景 (scenario not given)"
NEEDS_INFO_NOTE = "No input/output example was found in the GitHub post; waiting for one."
# Cases in these statuses are in a batch or a release: their content is frozen.
FROZEN = {CaseStatus.IN_BATCH, CaseStatus.TRAINED, CaseStatus.RELEASED}
# A deleted post withdraws its case at any point, as the author's own withdrawal does (intake.services).
WITHDRAWABLE = {CaseStatus.NEW, CaseStatus.NEEDS_INFO, CaseStatus.ACCEPTED, *FROZEN}
UID_NAMESPACE = uuid.UUID("0b7f1c52-6a57-4a43-9d0e-5a8f3c7e2b11")
# GitHub's ids and issue numbers as our columns hold them (BigIntegerField, PositiveIntegerField).
GITHUB_ID_MAX = 2**63 - 1
ISSUE_NUMBER_MAX = 2**31 - 1


class PayloadError(ValueError):
    """A payload that does not name an item (no id, no issue number): refused with this reason."""


@dataclass(frozen=True)
class Outcome:
    """What one read did: new, updated, unchanged, withdrawn or skipped (with why)."""

    action: str
    external_id: str
    reason: str = ""
    author_login: str = ""
    cleaning: tuple[str, ...] = ()


def external_id_for(*, source: GithubSource, number: int, comment_id: int | None = None) -> str:
    base = f"{source_host_prefix(source=source)}{source.repo}#{number}"
    return f"{base}/comment-{comment_id}" if comment_id else base


def github_time(value: object, *, field: str, notes: list[str]) -> datetime:
    """GitHub's ISO timestamp, aware; now (noted) when it is missing or not a time.

    Now, not a refusal: the version then counts as the newest, which is what a
    delivery arriving now most likely is.
    """
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:  # well-formed but impossible, e.g. month 13
        parsed = None
    if parsed is None:
        notes.append(f"{field}: {str(value)[:40]!r} is not a timestamp; read as the time it was received")
        return timezone.now()
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def github_int(value: object, *, what: str, maximum: int) -> int:
    """A positive integer id or number from a payload, or `PayloadError("payload has no <what>")`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
        raise PayloadError(f"payload has no {what}" if value is None else f"payload has no valid {what}: {value!r}")
    return value


def _plus_one(payload: dict[str, Any]) -> int | None:
    reactions = payload.get("reactions")
    count = reactions.get("+1", 0) if isinstance(reactions, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= 2**31 - 1 else None


def _field_max(name: str) -> int:
    max_length = GithubItem._meta.get_field(name).max_length
    assert max_length is not None
    return max_length


def _identity(*, source: GithubSource, payload: dict[str, Any], notes: list[str]) -> tuple[str, str]:
    """The author's login and the item's link, as they can be stored and shown."""
    user = payload.get("user")
    login = user.get("login") if isinstance(user, dict) else None
    login = clean_text(login, field="login", notes=notes) if isinstance(login, str) else ""
    login = cut(login, limit=_field_max("author_login"), field="login", notes=notes) or "ghost"
    html_url = github_url(payload.get("html_url"), host=source_web_host(source=source), field="html_url", notes=notes)
    return login, html_url


def _text(payload: dict[str, Any], key: str, *, notes: list[str]) -> str:
    value = payload.get(key)
    return clean_text(value, field=key, notes=notes) if isinstance(value, str) else ""


def _is_maintainer_post(*, source: GithubSource, payload: dict[str, Any]) -> str:
    user = payload.get("user") or {}
    login = (user.get("login") or "").lower()
    if user.get("type") == "Bot" or login.endswith("[bot]"):
        return "posted by a bot"
    if MARKER_PREFIX in (payload.get("body") or ""):
        return "posted by cotrain"
    if payload.get("author_association") in MAINTAINER_ASSOCIATIONS:
        return f"maintainer post ({payload['author_association']})"
    if login in {name.lower() for name in source.maintainers}:
        return "maintainer post (configured maintainer)"
    return ""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clean_title(title: str) -> str:
    """An issue title as a scenario: without `[共训]`, `【需求】`, `Co-training request:` prefixes."""
    title = re.sub(r"^\s*(?:\[[^\]]{1,20}\]|【[^】]{1,20}】)\s*", "", title or "")
    title = re.sub(r"^\s*(?:co-?training( request)?|共训(需求)?|需求)\s*[:：\-]\s*", "", title, flags=re.IGNORECASE)
    return title.strip()


def case_input_for(*, parsed: parsing.ParsedRequest, body: str, title: str, consent: bool) -> tuple[CaseInput, bool]:
    """The case content for a parsed request, and whether it has a complete example."""
    complete = parsed.complete_examples
    first = complete[0] if complete else (parsed.examples[0] if parsed.examples else None)
    scenario = parsed.scenario or clean_title(title) or parsed.summary or NO_SCENARIO
    prompt = (first.input if first and first.input else "") or body.strip() or scenario
    examples_text = "\n".join(f"{e.input}\n{e.output}" for e in parsed.examples)
    data = CaseInput(
        scenario=_clip(scenario, SCENARIO_MAX),
        prompt=_clip(prompt, TEXT_MAX),
        expected_output=_clip(first.output, TEXT_MAX) if complete and first else EXAMPLE_NEEDED,
        bad_output=_clip(first.bad_output, TEXT_MAX) if first else "",
        language=parsed.language or parsing.detect_language(f"{scenario}\n{examples_text or body}"),
        model_version=parsed.model_version,
        license_consent=consent,
        # Every further complete pair is trained on too (a numbered list of 输入/输出).
        extra_examples=tuple(
            (_clip(e.input, TEXT_MAX), _clip(e.output, TEXT_MAX)) for e in complete[1 : 1 + EXTRA_EXAMPLES_MAX]
        ),
    )
    return data, bool(complete)


def _parsed_record(parsed: parsing.ParsedRequest) -> dict[str, Any]:
    return {
        "scenario": parsed.scenario,
        "summary": parsed.summary,
        "examples": [{"input": e.input, "output": e.output, "bad_output": e.bad_output} for e in parsed.examples],
        "notes": parsed.notes,
        "model_version": parsed.model_version,
        "language": parsed.language,
        "consent": parsed.consent,
        "is_form": parsed.is_form,
        "labels_found": list(parsed.labels_found),
    }


def _skip_reason(*, source: GithubSource, kind: str, payload: dict[str, Any], parsed: parsing.ParsedRequest) -> str:
    if kind == ItemKind.ISSUE and payload.get("pull_request"):
        return "pull request"
    if kind == ItemKind.COMMENT:
        reason = _is_maintainer_post(source=source, payload=payload)
        if reason:
            return reason
        if not parsed.examples and not parsing.looks_like_request(payload.get("body") or ""):
            return "not a request (no example, no request words)"
    consent = parsed.consent if parsed.consent is not None else source.contributions_licensed
    if not consent:
        return "no license consent"
    return ""


@dataclass
class _Read:
    """One payload as read: the item's fields and what the request says (no database)."""

    external_id: str
    login: str
    updated_at: datetime
    plus_one: int | None
    fields: dict[str, Any]
    skip: str
    data: CaseInput | None
    complete: bool


def _read(*, source: GithubSource, kind: str, payload: dict[str, Any], issue_number: int, issue_title: str) -> _Read:
    github_id = github_int(payload.get("id"), what=f"{'comment' if kind == ItemKind.COMMENT else 'issue'} id",
                           maximum=GITHUB_ID_MAX)  # fmt: skip
    issue_number = github_int(issue_number, what="issue number", maximum=ISSUE_NUMBER_MAX)
    comment_id = github_id if kind == ItemKind.COMMENT else None
    external_id = external_id_for(source=source, number=issue_number, comment_id=comment_id)
    notes: list[str] = []
    login, html_url = _identity(source=source, payload=payload, notes=notes)
    body = _text(payload, "body", notes=notes)
    title = clean_text(issue_title, field="title", notes=notes) if kind == ItemKind.COMMENT else _text(
        payload, "title", notes=notes
    )
    association = cut(_text(payload, "author_association", notes=notes), limit=_field_max("author_association"),
                      field="author_association", notes=notes)  # fmt: skip
    parsed = parsing.parse_request(body)
    skip = _skip_reason(source=source, kind=kind, payload={**payload, "body": body}, parsed=parsed)
    updated_at = github_time(payload.get("updated_at"), field="updated_at", notes=notes)
    created_at = github_time(payload.get("created_at"), field="created_at", notes=notes)
    plus_one = _plus_one(payload)
    fields = {
        "source": source,
        "kind": kind,
        "github_id": github_id,
        "issue_number": issue_number,
        "html_url": html_url,
        "title": _clip(title, _field_max("title")),
        "author_login": login,
        "author_association": association,
        "body": body,
        "parsed": _parsed_record(parsed),
        "cleaning": notes,
        "github_created_at": created_at,
        "github_updated_at": updated_at,
        **({"plus_one": plus_one} if plus_one is not None else {}),
    }
    consent = parsed.consent if parsed.consent is not None else source.contributions_licensed
    data, complete = case_input_for(parsed=parsed, body=body, title=title, consent=consent)
    return _Read(external_id, login, updated_at, plus_one, fields, skip, data, complete)


def _unchanged(*, item: GithubItem, read: _Read) -> Outcome | None:
    """The outcome when the stored version is as new as this one (its 👍 count refreshed); else None."""
    if item.deleted_at is not None:
        return Outcome("skipped", read.external_id, "deleted on GitHub", read.login)
    if read.updated_at > item.github_updated_at:
        return None
    if read.plus_one is not None and read.plus_one != item.plus_one:
        item_set_plus_one(item_id=item.pk, plus_one=read.plus_one)
    reason = "older than the stored version" if read.updated_at < item.github_updated_at else ""
    return Outcome("skipped" if reason else "unchanged", read.external_id, reason, read.login)


@transaction.atomic
def item_upsert(
    *, source: GithubSource, kind: str, payload: dict[str, Any], issue_number: int, issue_title: str = ""
) -> Outcome:
    """Record the issue or comment in `payload` (GitHub's JSON) and create or update its case.

    Raises `PayloadError` when the payload names no item; the outcome lists what was cleaned.
    """
    read = _read(source=source, kind=kind, payload=payload, issue_number=issue_number, issue_title=issue_title)
    return replace(_upsert(read=read), cleaning=tuple(read.fields["cleaning"]))


def _upsert(*, read: _Read) -> Outcome:
    item = GithubItem.objects.select_for_update().filter(external_id=read.external_id).first()
    if item is not None and (outcome := _unchanged(item=item, read=read)) is not None:
        return outcome
    if item is None:
        item = GithubItem(external_id=read.external_id, state=ItemState.SKIPPED, **read.fields)
    else:
        for name, value in read.fields.items():
            setattr(item, name, value)
    if read.skip and item.case_id is None:
        item.state, item.skip_reason = ItemState.SKIPPED, read.skip
        item.save()
        return Outcome("skipped", read.external_id, read.skip, read.login)
    assert read.data is not None
    if item.case_id is None:
        item.case = _case_create(item=item, data=read.data, complete=read.complete, source_url=item.html_url)
        item.state, item.skip_reason = ItemState.CASE, ""
        item.save()
        return Outcome("new", read.external_id, "" if read.complete else "needs info: no example", read.login)
    item.save()
    return _case_update(item=item, data=read.data, complete=read.complete)


@transaction.atomic
def items_upsert_many(
    *, source: GithubSource, kind: str, payloads: list[dict[str, Any]], issue_number: int | None = None
) -> list[Outcome | ValidationError]:
    """`item_upsert` for a page of payloads, in a handful of statements when most are new or unchanged.

    New items and their cases are inserted in bulk (`intake.services.cases_import_many`);
    the rare edit goes through `item_upsert` one by one. Syncing 10,000 comments is
    dominated by this path (see bench/ghsync_sync.py).
    """
    reads = [
        _read(source=source, kind=kind, payload=p, issue_number=issue_number or p.get("number"), issue_title="")
        for p in payloads
    ]
    stored = {
        item.external_id: item for item in GithubItem.objects.filter(external_id__in=[r.external_id for r in reads])
    }
    outcomes: dict[int, Outcome | ValidationError] = {}
    fresh: dict[str, int] = {}
    for index, read in enumerate(reads):
        item = stored.get(read.external_id)
        if item is not None:
            outcomes[index] = _unchanged(item=item, read=read) or item_upsert(
                source=source, kind=kind, payload=payloads[index], issue_number=read.fields["issue_number"]
            )
        elif read.external_id not in fresh:
            fresh[read.external_id] = index
    outcomes.update(_create_many(reads={index: reads[index] for index in fresh.values()}))
    return [outcomes[index] for index in sorted(outcomes)]


def _create_many(*, reads: dict[int, _Read]) -> dict[int, Outcome | ValidationError]:
    requests = {index: read for index, read in reads.items() if not read.skip and read.data is not None}
    records = [
        _import_record(external_id=read.external_id, data=read.data, complete=read.complete,
                       source_url=read.fields["html_url"], login=read.login,
                       created_at=read.fields["github_created_at"])
        for read in requests.values()
        if read.data is not None
    ]
    cases = dict(zip(requests, cases_import_many(records=records), strict=True))
    items, outcomes = [], {}
    for index, read in reads.items():
        case = cases.get(index)
        if isinstance(case, ValidationError):
            outcomes[index] = case
            continue
        state = ItemState.CASE if case is not None else ItemState.SKIPPED
        items.append(
            GithubItem(external_id=read.external_id, state=state, skip_reason=read.skip, case=case, **read.fields)
        )
        if case is None:
            outcomes[index] = Outcome("skipped", read.external_id, read.skip, read.login)
        else:
            reason = "" if read.complete else "needs info: no example"
            outcomes[index] = Outcome("new", read.external_id, reason, read.login)
    GithubItem.objects.bulk_create(items)
    return outcomes


def _import_record(*, external_id: str, data: CaseInput, complete: bool, source_url: str, login: str,
                   created_at: datetime) -> CaseImport:
    # The uid is derived from the external id: even a case made by an earlier,
    # interrupted sync (item row lost, case kept) is found again, not duplicated.
    return CaseImport(
        uid=str(uuid.uuid5(UID_NAMESPACE, external_id)), data=data, source=CaseSource.GITHUB,
        source_url=source_url, external_id=external_id,
        status=CaseStatus.NEW if complete else CaseStatus.NEEDS_INFO,
        status_reason="" if complete else NEEDS_INFO_NOTE, author_name=login, created_at=created_at,
    )  # fmt: skip


def _case_create(*, item: GithubItem, data: CaseInput, complete: bool, source_url: str) -> FeedbackCase:
    record = _import_record(external_id=item.external_id, data=data, complete=complete, source_url=source_url,
                            login=item.author_login, created_at=item.github_created_at)
    return case_import(record=record, author=None)[0]


def _case_update(*, item: GithubItem, data: CaseInput, complete: bool) -> Outcome:
    case = FeedbackCase.objects.get(pk=item.case_id)
    login = item.author_login
    if case.status in FROZEN or case.status == CaseStatus.WITHDRAWN:
        return Outcome("skipped", item.external_id, f"edited on GitHub, but the case is {case.status}", login)
    if not complete:
        # Keep the last good examples: an edit that drops them is noted, not applied.
        kept = tuple((pair["input"], pair["output"]) for pair in case.extra_examples)
        data = CaseInput(
            **{**data.__dict__, "prompt": case.prompt, "expected_output": case.expected_output, "extra_examples": kept}
        )
    changed = case_update_from_source(case=case, data=data, note=f"Edited on GitHub: {item.html_url}")
    if complete and case.status == CaseStatus.NEEDS_INFO:
        case_transition(
            case=case, to_status=CaseStatus.NEW, actor=None, note="Example added on GitHub.", via_source=True
        )
        return Outcome("updated", item.external_id, "example added", login)
    return Outcome("updated" if changed else "unchanged", item.external_id, "", login)


@transaction.atomic
def item_mark_deleted(
    *,
    source: GithubSource,
    kind: str,
    issue_number: int,
    github_id: int,
    at: datetime,
    payload: dict[str, Any] | None = None,
) -> Outcome:
    """The issue or comment was deleted on GitHub: withdraw its case (a tombstone if unknown)."""
    github_id = github_int(github_id, what=f"{'comment' if kind == ItemKind.COMMENT else 'issue'} id",
                           maximum=GITHUB_ID_MAX)  # fmt: skip
    issue_number = github_int(issue_number, what="issue number", maximum=ISSUE_NUMBER_MAX)
    comment_id = github_id if kind == ItemKind.COMMENT else None
    external_id = external_id_for(source=source, number=issue_number, comment_id=comment_id)
    item = GithubItem.objects.select_for_update().filter(external_id=external_id).first()
    payload = payload or {}
    notes: list[str] = []
    login, html_url = _identity(source=source, payload=payload, notes=notes)
    if login == "ghost" and item is not None:
        login = item.author_login
    if item is None:
        item = GithubItem.objects.create(
            source=source,
            kind=kind,
            external_id=external_id,
            github_id=github_id,
            issue_number=issue_number,
            html_url=html_url,
            author_login=login,
            body=_text(payload, "body", notes=notes),
            cleaning=notes,
            state=ItemState.DELETED,
            github_created_at=at,
            github_updated_at=at,
            deleted_at=at,
        )
        return Outcome("skipped", external_id, "deleted before it was read", login)
    if item.deleted_at is not None:
        return Outcome("unchanged", external_id, "", login)
    item.deleted_at, item.state = at, ItemState.DELETED
    item.save(update_fields=["deleted_at", "state", "last_seen_at"])
    case = FeedbackCase.objects.filter(pk=item.case_id).first()
    if case is None:
        return Outcome("skipped", external_id, "deleted (was not a case)", login)
    if case.status not in WITHDRAWABLE:
        return Outcome("skipped", external_id, f"deleted on GitHub, but the case is {case.status}", login)
    case_transition(
        case=case,
        to_status=CaseStatus.WITHDRAWN,
        actor=None,
        note=f"Deleted on GitHub ({item.html_url}).",
        via_source=True,
    )
    return Outcome("withdrawn", external_id, "", login)


def item_set_plus_one(*, item_id: int, plus_one: int) -> None:
    GithubItem.objects.filter(pk=item_id).exclude(plus_one=plus_one).update(plus_one=plus_one)
