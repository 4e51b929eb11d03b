"""Every read of feedback cases that a view, the API or a command needs.

Lists page by keyset (`id` below or above a cursor) rather than OFFSET, so that a
page costs one index range scan whether it is the first or the 2,000th; each
filter has an index in `FeedbackCase.Meta.indexes`.
"""

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser
from django.db.models import Count, QuerySet

from accounts.models import User
from accounts.selectors import user_is_maintainer
from intake import neardup
from intake.models import CaseBand, CaseEvent, CaseStatus, CaseVote, FeedbackCase

PUBLIC_STATUSES = [CaseStatus.ACCEPTED, CaseStatus.IN_BATCH, CaseStatus.TRAINED, CaseStatus.RELEASED]
PAGE_SIZE = 50


@dataclass(frozen=True)
class CaseFilters:
    status: str = ""
    source: str = ""
    language: str = ""
    scenario: str = ""
    q: str = ""


@dataclass(frozen=True)
class CasePage:
    cases: list[FeedbackCase]
    next_before: int | None
    prev_after: int | None


def _apply_filters(qs: QuerySet[FeedbackCase], filters: CaseFilters) -> QuerySet[FeedbackCase]:
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.source:
        qs = qs.filter(source=filters.source)
    if filters.language:
        qs = qs.filter(language=filters.language)
    if filters.scenario:
        qs = qs.filter(scenario=filters.scenario)
    if filters.q:
        # search_text is lower-cased on write; on PostgreSQL a trigram index serves it.
        qs = qs.filter(search_text__contains=filters.q.strip().lower())
    return qs


def _keyset_page(qs: QuerySet[FeedbackCase], *, before: int | None, after: int | None, page_size: int) -> CasePage:
    """Newest first. `before` gives the next (older) page, `after` the previous one."""
    if after is not None:
        rows = list(qs.filter(id__gt=after).order_by("id")[: page_size + 1])
        has_newer = len(rows) > page_size
        rows = list(reversed(rows[:page_size]))
        return CasePage(
            cases=rows,
            next_before=rows[-1].pk if rows else None,
            prev_after=rows[0].pk if rows and has_newer else None,
        )
    if before is not None:
        qs = qs.filter(id__lt=before)
    rows = list(qs.order_by("-id")[: page_size + 1])
    has_older = len(rows) > page_size
    rows = rows[:page_size]
    return CasePage(
        cases=rows,
        next_before=rows[-1].pk if rows and has_older else None,
        prev_after=rows[0].pk if rows and before is not None else None,
    )


def case_page_for_triage(
    *, filters: CaseFilters, before: int | None = None, after: int | None = None, page_size: int = PAGE_SIZE
) -> CasePage:
    qs = _apply_filters(FeedbackCase.objects.select_related("author", "duplicate_of"), filters)
    return _keyset_page(qs, before=before, after=after, page_size=page_size)


def case_page_for_author(
    *, user: User, before: int | None = None, after: int | None = None, page_size: int = PAGE_SIZE
) -> CasePage:
    return _keyset_page(FeedbackCase.objects.filter(author=user), before=before, after=after, page_size=page_size)


def case_queryset_for_author(*, user: User) -> QuerySet[FeedbackCase]:
    return FeedbackCase.objects.filter(author=user).order_by("-id")


def case_queryset_public(*, status: str = CaseStatus.ACCEPTED) -> QuerySet[FeedbackCase]:
    """Accepted requests (or one later public status), most voted first."""
    if status not in PUBLIC_STATUSES:
        status = CaseStatus.ACCEPTED
    return FeedbackCase.objects.filter(status=status).order_by("-vote_count", "-id")


def case_get_visible(*, case_id: int, user: User | AnonymousUser) -> FeedbackCase | None:
    """A case its viewer may see: their own, any for maintainers, public ones for all."""
    case = FeedbackCase.objects.select_related("author", "duplicate_of").filter(pk=case_id).first()
    if case is None:
        return None
    if case.status in PUBLIC_STATUSES or user_is_maintainer(user=user):
        return case
    if user.is_authenticated and case.author_id == user.pk:
        return case
    return None


def case_events(*, case: FeedbackCase) -> QuerySet[CaseEvent]:
    return CaseEvent.objects.filter(case=case).select_related("actor").order_by("id")


def case_ids_voted_by(*, user: User | AnonymousUser, case_ids: list[int]) -> set[int]:
    if not user.is_authenticated:
        return set()
    return set(CaseVote.objects.filter(user=user, case_id__in=case_ids).values_list("case_id", flat=True))


def case_scenarios(*, limit: int = 200) -> list[str]:
    """Distinct scenarios for the triage filter (an index-only scan on PostgreSQL)."""
    return list(FeedbackCase.objects.order_by("scenario").values_list("scenario", flat=True).distinct()[:limit])


def case_count_by_status() -> dict[str, int]:
    rows = FeedbackCase.objects.order_by().values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def case_iter_all(*, chunk_size: int = 2000) -> Iterator[FeedbackCase]:
    return FeedbackCase.objects.select_related("author").order_by("id").iterator(chunk_size=chunk_size)


def case_to_record(*, case: FeedbackCase) -> dict[str, object]:
    """One case as a line of `export_cases` (and of `import_cases`)."""
    return {
        "id": case.pk,
        "uid": str(case.uid),
        "source": case.source,
        "source_url": case.source_url,
        "external_id": case.external_id,
        "status": case.status,
        "status_reason": case.status_reason,
        "scenario": case.scenario,
        "prompt": case.prompt,
        "bad_output": case.bad_output,
        "expected_output": case.expected_output,
        "extra_examples": list(case.extra_examples),
        "language": case.language,
        "tags": list(case.tags),
        "model_version": case.model_version,
        "license_consent": case.license_consent,
        "author": case.author.username if case.author else case.author_name,
        "created_at": case.created_at.isoformat(),
    }


# What a source stores as the expected output while a request still lacks its
# example (the column may not be empty); ghsync uses this very constant.
EXAMPLE_PLACEHOLDER = "（待补充：请提供期望输出示例）(example needed: the expected output is missing)"
EXAMPLE_PLACEHOLDERS = frozenset({EXAMPLE_PLACEHOLDER})


def case_has_training_example(case: FeedbackCase) -> bool:
    """Whether the case carries a real expected output a model could be trained on (not a placeholder)."""
    expected = case.expected_output.strip()
    return bool(expected) and expected not in EXAMPLE_PLACEHOLDERS


def case_neardup_text(case: FeedbackCase) -> str:
    """What makes two requests the same: the input and the expected output (not the scenario, a category
    many requests share, nor the bad output, which differs with the model version)."""
    return f"{case.prompt}\n{case.expected_output}"


@dataclass(frozen=True)
class LikelyDuplicate:
    case: FeedbackCase
    similarity: float  # estimated Jaccard of the two requests' n-grams, digits masked


# Candidates a near-duplicate may point at: not the withdrawn (gone), nor duplicates (their original is shown).
_NOT_ORIGINALS = [CaseStatus.WITHDRAWN, CaseStatus.DUPLICATE]
LIKELY_DUPLICATES_SHOWN = 5


def cases_likely_duplicates(*, cases: Sequence[FeedbackCase], limit: int = LIKELY_DUPLICATES_SHOWN
                            ) -> dict[int, list[LikelyDuplicate]]:
    """For each case, the other cases that are probably the same request, most similar first.

    Three queries for a whole page: the page's band keys, the cases sharing one, and
    their signatures; a candidate counts once its estimated Jaccard reaches
    `neardup.THRESHOLD` (a shared band alone is only a hint).
    """
    found: dict[int, list[LikelyDuplicate]] = {case.pk: [] for case in cases}
    keys_of: dict[int, set[int]] = defaultdict(set)
    for case_id, key in CaseBand.objects.filter(case_id__in=list(found)).values_list("case_id", "key"):
        keys_of[key].add(case_id)
    sharing = (CaseBand.objects.filter(key__in=list(keys_of)).exclude(case__status__in=_NOT_ORIGINALS)
               .values_list("case_id", "key"))
    candidates: dict[int, set[int]] = defaultdict(set)
    for other_id, key in sharing:
        for case_id in keys_of[key] - {other_id}:
            candidates[case_id].add(other_id)
    others = FeedbackCase.objects.in_bulk({pk for pks in candidates.values() for pk in pks})
    for case in cases:
        if not case.signature or not candidates.get(case.pk):
            continue
        mine = neardup.signature_from_bytes(bytes(case.signature))
        scored = [LikelyDuplicate(others[pk], neardup.similarity(mine, neardup.signature_from_bytes(bytes(
            others[pk].signature)))) for pk in candidates[case.pk] if others[pk].signature]
        scored = [hit for hit in scored if hit.similarity >= neardup.THRESHOLD]
        found[case.pk] = sorted(scored, key=lambda hit: (-hit.similarity, hit.case.pk))[:limit]
    return found
