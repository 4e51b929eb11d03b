"""Every write to feedback cases, votes and their audit trail.

`case_transition` is the one function that changes `FeedbackCase.status`; views,
the API, commands and (later) Celery tasks all call it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from accounts.selectors import user_is_maintainer
from intake import neardup
from intake.models import (
    IDEMPOTENCY_KEY_MAX,
    REASON_MAX,
    CaseBand,
    CaseEvent,
    CaseSource,
    CaseStatus,
    CaseVote,
    FeedbackCase,
)
from intake.pii import find_pii
from intake.selectors import case_has_training_example, case_neardup_text

S = CaseStatus
MAINTAINER, AUTHOR, SYSTEM = "maintainer", "author", "system"

# (from, to) -> who may make the move. SYSTEM moves are made by the curation,
# training and release services (actor None or the maintainer who triggered them).
TRANSITIONS: dict[tuple[str, str], str] = {
    **{(src, dst): MAINTAINER for src in (S.NEW, S.NEEDS_INFO) for dst in (S.ACCEPTED, S.REJECTED, S.DUPLICATE)},
    (S.NEW, S.NEEDS_INFO): MAINTAINER,
    (S.ACCEPTED, S.REJECTED): MAINTAINER,
    (S.REJECTED, S.NEW): MAINTAINER,
    (S.DUPLICATE, S.NEW): MAINTAINER,
    # An author may take a request back at any point, also once it is in a batch or a release (consent to
    # the data license withdrawn): every later dataset version leaves it out; releases already built keep it
    # and say so on their pages.
    **{(src, S.WITHDRAWN): AUTHOR for src in (S.NEW, S.NEEDS_INFO, S.ACCEPTED, S.IN_BATCH, S.TRAINED, S.RELEASED)},
    (S.NEEDS_INFO, S.NEW): AUTHOR,
    (S.ACCEPTED, S.IN_BATCH): SYSTEM,
    (S.IN_BATCH, S.TRAINED): SYSTEM,
    (S.TRAINED, S.RELEASED): SYSTEM,
}
VOTABLE_STATUSES = {S.ACCEPTED, S.IN_BATCH, S.TRAINED, S.RELEASED}
# A repeat of a submission with the same Idempotency-Key within this window returns the
# first case; after it, the key may name a new submission (as with payment APIs' keys).
IDEMPOTENCY_WINDOW = timedelta(hours=24)
IDEMPOTENCY_KEY_RE = re.compile(rf"[\x21-\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}")


@dataclass(frozen=True)
class CaseInput:
    """The content of a case as a person submits it (web form, API or import)."""

    scenario: str
    prompt: str
    expected_output: str
    bad_output: str = ""
    language: str = "zh"
    tags: tuple[str, ...] = ()
    model_version: str = ""
    license_consent: bool = False
    # (input, output) pairs besides the first, which is prompt -> expected_output.
    extra_examples: tuple[tuple[str, str], ...] = ()

    def extra_example_records(self) -> list[dict[str, str]]:
        """`extra_examples` as `FeedbackCase.extra_examples` stores them."""
        return [{"input": text, "output": output} for text, output in self.extra_examples]

    def case_fields(self) -> dict[str, Any]:
        """The `FeedbackCase` fields this content fills (one mapping for every write path)."""
        return {
            "scenario": self.scenario, "prompt": self.prompt, "bad_output": self.bad_output,
            "expected_output": self.expected_output, "extra_examples": self.extra_example_records(),
            "language": self.language, "tags": list(self.tags), "model_version": self.model_version,
            "license_consent": self.license_consent,
        }  # fmt: skip

    @classmethod
    def from_cleaned(cls, data: Mapping[str, Any], *, tags: Sequence[str]) -> CaseInput:
        """From a form's `cleaned_data` or a serializer's `validated_data`."""
        return cls(
            scenario=data["scenario"], prompt=data["prompt"], bad_output=data.get("bad_output", ""),
            expected_output=data["expected_output"], language=data["language"], tags=tuple(tags),
            model_version=data.get("model_version", ""), license_consent=data["license_consent"],
        )  # fmt: skip


def _case_texts(case: FeedbackCase) -> list[str]:
    # Called after validation: every extra example is an {"input", "output"} pair of strings.
    extras = [pair[key] for pair in case.extra_examples for key in ("input", "output")]
    return [case.scenario, case.prompt, case.bad_output, case.expected_output, *extras]


def _search_text(case: FeedbackCase) -> str:
    return "\n".join(_case_texts(case)).lower()


def _check_may_transition(
    *, case: FeedbackCase, to_status: str, actor: User | AnonymousUser | None, via_source: bool = False
) -> None:
    role = TRANSITIONS.get((case.status, to_status))
    if role is None:
        raise ValidationError(
            f"Case #{case.pk} is {case.get_status_display()}; it cannot become {CaseStatus(to_status).label}.",
            code="invalid_transition",
        )
    if role == AUTHOR and via_source and actor is None and case.source == CaseSource.GITHUB and case.external_id:
        # The author has no account here: GitHub sync acts for them when they edit or
        # delete their own post (ghsync), and only for the moves an author may make.
        return
    if role == MAINTAINER and not (actor is not None and user_is_maintainer(user=actor)):
        raise PermissionDenied("Only maintainers can triage cases.")
    if role == AUTHOR and not (actor is not None and actor.is_authenticated and actor.pk == case.author_id):
        raise PermissionDenied("Only the person who submitted a case can do this.")
    if role == SYSTEM and actor is not None and not user_is_maintainer(user=actor):
        raise PermissionDenied("Only the training loop moves cases into batches and releases.")


def _resolve_duplicate_target(*, case: FeedbackCase, duplicate_of_id: int | None) -> FeedbackCase:
    if duplicate_of_id is None:
        raise ValidationError("Say which case this one duplicates.", code="duplicate_of_required")
    target = FeedbackCase.objects.filter(pk=duplicate_of_id).first()
    if target is None:
        raise ValidationError(f"There is no case #{duplicate_of_id}.", code="duplicate_of_missing")
    # Point at the original, never at another duplicate, so chains stay one step long.
    if target.status == S.DUPLICATE and target.duplicate_of_id:
        target = FeedbackCase.objects.get(pk=target.duplicate_of_id)
    if target.pk == case.pk:
        raise ValidationError("A case cannot duplicate itself.", code="duplicate_of_self")
    return target


@transaction.atomic
def case_transition(
    *,
    case: FeedbackCase,
    to_status: str,
    actor: User | None,
    note: str = "",
    duplicate_of_id: int | None = None,
    via_source: bool = False,
) -> FeedbackCase:
    """Move a case to `to_status`, recording who, when and why; the only writer of status.

    `via_source`: the case's source (GitHub sync) reports an author's own move (an edit
    that adds the missing example, a deleted post), with `actor` None.
    """
    # Lock the row and decide on its committed status, not on the caller's copy:
    # two maintainers triaging the same case at once must not both succeed.
    locked = FeedbackCase.objects.select_for_update().get(pk=case.pk)
    _check_may_transition(case=locked, to_status=to_status, actor=actor, via_source=via_source)
    note = note.strip()
    if len(note) > REASON_MAX:
        raise ValidationError(f"The note must be at most {REASON_MAX} characters.", code="note_too_long")
    if to_status == S.REJECTED and not note:
        raise ValidationError("Give a reason when rejecting a case.", code="reason_required")
    if to_status == S.NEEDS_INFO and not note:
        raise ValidationError("Say what information is missing.", code="question_required")
    if to_status == S.ACCEPTED and not case_has_training_example(locked):
        # Accepted cases go into dataset batches as training rows; a placeholder would teach the model to print it.
        raise ValidationError(
            f"Case #{locked.pk} cannot be accepted: its expected output is still missing (a placeholder). "
            "Add a real example, or ask for one (needs info).",
            code="example_missing",
        )
    duplicate_of = (
        _resolve_duplicate_target(case=locked, duplicate_of_id=duplicate_of_id) if to_status == S.DUPLICATE else None
    )

    from_status = locked.status
    locked.status = to_status
    locked.status_reason = note
    locked.status_changed_at = timezone.now()
    locked.duplicate_of = duplicate_of
    locked.save(update_fields=["status", "status_reason", "status_changed_at", "duplicate_of", "updated_at"])
    CaseEvent.objects.create(
        case=locked,
        actor=actor if actor is not None and actor.is_authenticated else None,
        action="status",
        from_status=from_status,
        to_status=to_status,
        note=note,
        changes={"duplicate_of": duplicate_of.pk} if duplicate_of else {},
    )
    return locked


@transaction.atomic
def cases_bulk_transition(
    *, case_ids: list[int], to_status: str, actor: User, note: str = "", duplicate_of_id: int | None = None
) -> int:
    """Triage many cases at once: all move, or (with every reason listed) none do."""
    errors: list[str] = []
    moved = 0
    cases = list(FeedbackCase.objects.filter(pk__in=case_ids).order_by("pk"))
    missing = sorted(set(case_ids) - {case.pk for case in cases})
    errors.extend(f"There is no case #{pk}." for pk in missing)
    for case in cases:
        try:
            with transaction.atomic():
                case_transition(case=case, to_status=to_status, actor=actor, note=note, duplicate_of_id=duplicate_of_id)
            moved += 1
        except ValidationError as exc:
            errors.extend(exc.messages)
    if errors:
        raise ValidationError(errors)
    return moved


def _derive(case: FeedbackCase) -> None:
    """The fields the services compute from a case's text: search text, personal-data flag, signature."""
    case.search_text = _search_text(case)
    case.personal_data = sorted({finding.kind for text in _case_texts(case) for finding in find_pii(text)})
    case.signature = neardup.signature_to_bytes(neardup.signature(case_neardup_text(case)))


# The fields `_derive` writes, saved with every edit of the text.
DERIVED_FIELDS = ["search_text", "personal_data", "signature"]


def _bands_write(cases: Sequence[FeedbackCase], *, new: bool = False) -> None:
    """Write the LSH band rows of saved cases (replacing those of an earlier text unless they are `new`)."""
    if not new:
        CaseBand.objects.filter(case__in=[case.pk for case in cases]).delete()
    CaseBand.objects.bulk_create(
        CaseBand(case_id=case.pk, key=key)
        for case in cases
        for key in sorted(set(neardup.band_keys(neardup.signature_from_bytes(bytes(case.signature)))))
    )


def _validated_case(*, case: FeedbackCase) -> FeedbackCase:
    if not case.license_consent:
        raise ValidationError(
            {"license_consent": f"You must agree to share this case under the {case.data_license} data license."}
        )
    case.tags = [tag.strip() for tag in case.tags]
    case.full_clean(exclude=["author", "duplicate_of"], validate_unique=True)
    _derive(case)
    return case


@transaction.atomic
def case_create(
    *,
    author: User | None,
    data: CaseInput,
    source: str = CaseSource.WEB,
    source_url: str = "",
    external_id: str = "",
    author_name: str = "",
    idempotency_key: str | None = None,
) -> FeedbackCase:
    """Record a new case (status `new`); raises ValidationError, writing nothing, on bad input."""
    case = FeedbackCase(
        author=author,
        idempotency_key=idempotency_key,
        author_name=author_name or (author.username if author else ""),
        source=source,
        source_url=source_url,
        external_id=external_id,
        **data.case_fields(),
        created_at=timezone.now(),
    )
    _validated_case(case=case).save()
    _bands_write([case], new=True)
    CaseEvent.objects.create(case=case, actor=author, action="created", to_status=case.status)
    return case


def validate_idempotency_key(key: str) -> None:
    if not IDEMPOTENCY_KEY_RE.fullmatch(key):
        raise ValidationError(
            f"An idempotency key is 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters (a UUID is a good one).",
            code="invalid_idempotency_key",
        )


def case_submit(
    *, author: User, data: CaseInput, source: str, idempotency_key: str | None, source_url: str = ""
) -> tuple[FeedbackCase, bool]:
    """`case_create` for a person's submission; returns (case, created).

    With an `idempotency_key`, a repeat by the same author within IDEMPOTENCY_WINDOW
    (a client retrying after a lost answer) returns the first case and writes nothing;
    the same key with other content is refused, so that a reused key never hides a case.
    """
    if idempotency_key is None:
        return case_create(author=author, data=data, source=source, source_url=source_url), True
    validate_idempotency_key(idempotency_key)
    with transaction.atomic():
        first = FeedbackCase.objects.select_for_update().filter(author=author, idempotency_key=idempotency_key).first()
        if first is not None and first.created_at >= timezone.now() - IDEMPOTENCY_WINDOW:
            return _same_submission(first, data=data), False
        if first is not None:
            # Expired: the key is free for this new submission.
            FeedbackCase.objects.filter(pk=first.pk).update(idempotency_key=None)
        try:
            with transaction.atomic():
                case = case_create(author=author, data=data, source=source, source_url=source_url,
                                   idempotency_key=idempotency_key)
        except IntegrityError:
            # A parallel request with the same key committed its case first: that one is the answer.
            first = FeedbackCase.objects.get(author=author, idempotency_key=idempotency_key)
            return _same_submission(first, data=data), False
    return case, True


def _same_submission(case: FeedbackCase, *, data: CaseInput) -> FeedbackCase:
    if any(getattr(case, name) != value for name, value in data.case_fields().items() if name != "license_consent"):
        raise ValidationError(
            f"This idempotency key was already used for case #{case.pk}, with other content; use a new key.",
            code="idempotency_key_reused",
        )
    return case


@dataclass(frozen=True)
class CaseImport:
    """One case to create as it was recorded elsewhere (an export line, a GitHub request)."""

    uid: str
    data: CaseInput
    source: str
    source_url: str
    external_id: str
    status: str
    status_reason: str
    author_name: str
    created_at: datetime

    def new_case(self, *, author: User | None = None) -> FeedbackCase:
        """The unsaved case this record describes."""
        return FeedbackCase(
            uid=self.uid, author=author, author_name=self.author_name, source=self.source,
            source_url=self.source_url, external_id=self.external_id, **self.data.case_fields(),
            status=self.status, status_reason=self.status_reason, created_at=self.created_at,
        )  # fmt: skip


@transaction.atomic
def case_import(*, record: CaseImport, author: User | None) -> tuple[FeedbackCase, bool]:
    """Create a case from a record unless its uid is known; returns (case, created)."""
    existing = FeedbackCase.objects.filter(uid=record.uid).first()
    if existing is not None:
        return existing, False
    case = _validated_case(case=record.new_case(author=author))
    case.save()
    CaseEvent.objects.create(case=case, action="imported", to_status=record.status, note=record.status_reason)
    return case, True


def _case_fields_for_compare(case: FeedbackCase) -> dict[str, Any]:
    return {
        name: getattr(case, name)
        for name in ("scenario", "prompt", "bad_output", "expected_output", "language", "tags")
    }


@transaction.atomic
def case_answer_info_request(*, case: FeedbackCase, actor: User, data: CaseInput) -> FeedbackCase:
    """The author adds the missing information; the case goes back to `new` for triage."""
    locked = FeedbackCase.objects.select_for_update().get(pk=case.pk)
    _check_may_transition(case=locked, to_status=S.NEW, actor=actor)
    before = _case_fields_for_compare(locked)
    for name in ("scenario", "prompt", "bad_output", "expected_output", "language", "model_version"):
        setattr(locked, name, getattr(data, name))
    locked.tags = list(data.tags)
    _validated_case(case=locked)
    after = _case_fields_for_compare(locked)
    changed = {name: {"from": before[name], "to": after[name]} for name in before if before[name] != after[name]}
    locked.save(update_fields=[*before.keys(), "model_version", *DERIVED_FIELDS, "updated_at"])
    _bands_write([locked])
    CaseEvent.objects.create(case=locked, actor=actor, action="edited", changes=changed)
    return case_transition(case=locked, to_status=S.NEW, actor=actor, note="Information added by the author.")


@transaction.atomic
def case_vote(*, case: FeedbackCase, user: User) -> bool:
    """Add the user's vote; returns False when they had already voted."""
    if not FeedbackCase.objects.filter(pk=case.pk, status__in=VOTABLE_STATUSES).exists():
        raise ValidationError("Only accepted requests can be voted on.", code="not_votable")
    try:
        with transaction.atomic():
            CaseVote.objects.create(case=case, user=user)
    except IntegrityError:
        return False
    FeedbackCase.objects.filter(pk=case.pk).update(vote_count=F("vote_count") + 1)
    return True


@transaction.atomic
def case_unvote(*, case: FeedbackCase, user: User) -> bool:
    deleted, _ = CaseVote.objects.filter(case=case, user=user).delete()
    if deleted:
        FeedbackCase.objects.filter(pk=case.pk, vote_count__gt=0).update(vote_count=F("vote_count") - 1)
    return bool(deleted)


@transaction.atomic
def case_update_from_source(*, case: FeedbackCase, data: CaseInput, note: str = "") -> dict[str, Any]:
    """The original was edited at its source (a GitHub issue or comment): update the content.

    Returns the changed fields ({name: {from, to}}), also written to the audit trail;
    nothing is written when nothing changed. Status is left to `case_transition`.
    """
    locked = FeedbackCase.objects.select_for_update().get(pk=case.pk)
    before = {**_case_fields_for_compare(locked), "extra_examples": locked.extra_examples}
    for name in ("scenario", "prompt", "bad_output", "expected_output", "language", "model_version"):
        setattr(locked, name, getattr(data, name))
    locked.tags = list(data.tags)
    locked.extra_examples = data.extra_example_records()
    locked.license_consent = data.license_consent
    _validated_case(case=locked)
    after = {**_case_fields_for_compare(locked), "extra_examples": locked.extra_examples}
    changed = {name: {"from": before[name], "to": after[name]} for name in before if before[name] != after[name]}
    if changed:
        fields = [*before.keys(), "model_version", "license_consent", *DERIVED_FIELDS, "updated_at"]
        locked.save(update_fields=fields)
        _bands_write([locked])
        CaseEvent.objects.create(case=locked, actor=None, action="edited", note=note, changes=changed)
    return changed


def cases_set_priority(*, priorities: dict[int, int]) -> int:
    """Store computed priorities ({case id: priority}); returns how many cases changed."""
    by_value: dict[int, list[int]] = {}
    for case_id, priority in priorities.items():
        by_value.setdefault(priority, []).append(case_id)
    # One UPDATE per distinct priority, not per case: a sync may touch thousands.
    return sum(
        FeedbackCase.objects.filter(pk__in=ids).exclude(priority=priority).update(priority=priority)
        for priority, ids in by_value.items()
    )


@transaction.atomic
def cases_import_many(*, records: list[CaseImport]) -> list[FeedbackCase | ValidationError]:
    """Create many cases in a few statements (a page of GitHub requests); one result per record, in order.

    Each record is validated like `case_import`, except that uniqueness is left to the
    database constraints (checking it row by row is most of the cost): the caller
    passes records it knows to be new, and a clash raises IntegrityError, writing
    nothing. A record whose uid exists is returned as the existing case; an invalid
    one as its ValidationError.
    """
    existing = {str(case.uid): case for case in FeedbackCase.objects.filter(uid__in=[r.uid for r in records])}
    results: list[FeedbackCase | ValidationError] = []
    new: list[FeedbackCase] = []
    for record in records:
        if record.uid in existing:
            results.append(existing[record.uid])
            continue
        case = record.new_case()
        try:
            if not case.license_consent:
                raise ValidationError({"license_consent": "No consent to the data license."})
            case.tags = [tag.strip() for tag in case.tags]
            case.full_clean(exclude=["author", "duplicate_of"], validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            results.append(exc)
            continue
        _derive(case)
        new.append(case)
        results.append(case)
    FeedbackCase.objects.bulk_create(new)
    _bands_write(new, new=True)
    CaseEvent.objects.bulk_create(
        CaseEvent(case=case, action="imported", to_status=case.status, note=case.status_reason) for case in new
    )
    return results
