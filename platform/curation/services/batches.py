"""Batches: create a training plan from accepted cases, edit it while it is a draft, approve it.

Approval is final. Every function that changes a batch's cases locks the batch row
and refuses unless it is still a draft, so an approved batch cannot change even
when two maintainers act at once.
"""

import re
from datetime import date, datetime, time, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from accounts.models import User
from cotrain_site.jobs import job_send
from curation.models import BatchCase, BatchStatus, DatasetBatch, DatasetVersion
from curation.selectors import batch_latest_approved, case_queryset_batchable
from curation.services.transitions import BUILD_JOB, batch_transition
from intake.models import CaseStatus, FeedbackCase
from intake.services import case_transition

ADD_PERMISSION = "curation.add_datasetbatch"
CHANGE_PERMISSION = "curation.change_datasetbatch"
APPROVE_PERMISSION = "curation.approve_datasetbatch"
# The name becomes the dataset's folder under ARTIFACT_ROOT/datasets/, so it is a slug.
BATCH_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Both splits must have rows: the trainer refuses an empty split.
MIN_CASES_TO_APPROVE = 2


def _require(user: User | None, permission: str, message: str) -> None:
    if user is None or not user.is_active or not user.has_perm(permission):
        raise PermissionDenied(message)


def _lock_draft(batch: DatasetBatch) -> DatasetBatch:
    locked = DatasetBatch.objects.select_for_update().get(pk=batch.pk)
    if locked.status != BatchStatus.DRAFT:
        raise ValidationError(
            f"Batch {locked.name} is {locked.status}; only a draft batch can change.", code="batch_final"
        )
    return locked


def _clean_name(name: str) -> str:
    name = name.strip() or f"batch-{timezone.localtime():%Y%m%d-%H%M%S}"
    if not BATCH_NAME_RE.match(name):
        raise ValidationError(
            "A batch name is letters, digits, '.', '_' and '-' (it names the dataset folder).", code="bad_name"
        )
    if DatasetBatch.objects.filter(name=name).exists():
        raise ValidationError(f"There is already a batch named {name}.", code="name_taken")
    return name


def _chosen_cases(*, case_ids: list[int]) -> list[FeedbackCase]:
    cases = {case.pk: case for case in FeedbackCase.objects.filter(pk__in=case_ids)}
    errors = [f"There is no case #{pk}." for pk in case_ids if pk not in cases]
    errors += [f"Case #{c.pk} is {c.get_status_display()}, not accepted." for c in cases.values()
               if c.status != CaseStatus.ACCEPTED]
    if errors:
        raise ValidationError(errors, code="bad_cases")
    return sorted(cases.values(), key=lambda c: (-c.priority, -c.vote_count, c.created_at, c.pk))


@transaction.atomic
def batch_create(
    *,
    by: User | None,
    name: str = "",
    case_ids: list[int] | None = None,
    created_before: datetime | None = None,
    limit: int | None = None,
    notes: str = "",
) -> DatasetBatch:
    """A draft batch of the given accepted cases, or by default of every accepted case not yet batched.

    `by` None is the monthly schedule. Cases keep the default order (highest
    priority, then most voted, then oldest first); `limit` keeps the first ones.
    """
    if by is not None:
        _require(by, ADD_PERMISSION, "Only maintainers can create dataset batches.")
    name = _clean_name(name)
    if case_ids is None:
        qs = case_queryset_batchable(created_before=created_before)
        cases = list(qs[:limit] if limit else qs)
    else:
        cases = _chosen_cases(case_ids=case_ids)[:limit] if limit else _chosen_cases(case_ids=case_ids)
    if not cases:
        raise ValidationError("There are no accepted cases to put in a batch.", code="no_cases")
    previous = batch_latest_approved()
    try:
        with transaction.atomic():
            batch = DatasetBatch.objects.create(
                name=name,
                notes=notes.strip(),
                created_by=by,
                period_start=previous.period_end if previous else None,
                period_end=created_before or timezone.now(),
            )
    except IntegrityError as exc:  # a concurrent create took the name after our check
        raise ValidationError(f"There is already a batch named {name}.", code="name_taken") from exc
    BatchCase.objects.bulk_create(
        [BatchCase(batch=batch, case=case, position=position) for position, case in enumerate(cases)]
    )
    return batch


def batch_create_monthly(*, today: date | None = None) -> DatasetBatch | None:
    """The co-training plan's schedule: on the 6th, a draft of the requests accepted up to the 1st.

    Named `plan-YYYY-MM` after the month it collects, so running it twice (or on
    another day of the month) returns the same batch. None when nothing is accepted.
    """
    today = today or timezone.localdate()
    month_start = today.replace(day=1)
    collected = (month_start - timedelta(days=1)).replace(day=1)
    name = f"plan-{collected:%Y-%m}"
    existing = DatasetBatch.objects.filter(name=name).first()
    if existing is not None:
        return existing
    cutoff = timezone.make_aware(datetime.combine(month_start, time.min))
    try:
        return batch_create(
            by=None,
            name=name,
            created_before=cutoff,
            notes=f"Monthly draft: requests accepted and submitted before {month_start:%Y-%m-%d}.",
        )
    except ValidationError as exc:
        if exc.code == "no_cases":
            return None
        if exc.code == "name_taken":
            return DatasetBatch.objects.get(name=name)
        raise


@transaction.atomic
def batch_case_remove(*, batch: DatasetBatch, case_id: int, by: User) -> DatasetBatch:
    _require(by, CHANGE_PERMISSION, "Only maintainers can edit dataset batches.")
    locked = _lock_draft(batch)
    deleted, _ = BatchCase.objects.filter(batch=locked, case_id=case_id).delete()
    if not deleted:
        raise ValidationError(f"Case #{case_id} is not in batch {locked.name}.", code="not_in_batch")
    return locked


@transaction.atomic
def batch_case_add(*, batch: DatasetBatch, case_id: int, by: User, weight: float = 1.0) -> DatasetBatch:
    _require(by, CHANGE_PERMISSION, "Only maintainers can edit dataset batches.")
    locked = _lock_draft(batch)
    (case,) = _chosen_cases(case_ids=[case_id])
    if not weight > 0:
        raise ValidationError("A case's weight must be above 0.", code="bad_weight")
    if BatchCase.objects.filter(batch=locked, case=case).exists():
        raise ValidationError(f"Case #{case_id} is already in batch {locked.name}.", code="already_in_batch")
    last = BatchCase.objects.filter(batch=locked).aggregate(last=Max("position"))["last"]
    BatchCase.objects.create(batch=locked, case=case, weight=weight, position=0 if last is None else last + 1)
    return locked


@transaction.atomic
def batch_discard(*, batch: DatasetBatch, by: User) -> DatasetBatch:
    _require(by, CHANGE_PERMISSION, "Only maintainers can discard dataset batches.")
    return batch_transition(batch=_lock_draft(batch), to_status=BatchStatus.DISCARDED, actor=by)


@transaction.atomic
def batch_approve(*, batch: DatasetBatch, by: User) -> DatasetBatch:
    """Approve a draft (final): its cases move to `in-batch` and its dataset version is built after commit."""
    _require(by, APPROVE_PERMISSION, "Only maintainers can approve dataset batches.")
    locked = _lock_draft(batch)
    items = list(BatchCase.objects.filter(batch=locked).select_related("case"))
    if len(items) < MIN_CASES_TO_APPROVE:
        raise ValidationError(
            f"A batch needs at least {MIN_CASES_TO_APPROVE} cases (one for each split).", code="too_few_cases"
        )
    # Checked again inside case_transition under the case's row lock; this gives every reason at once.
    stale = [item.case for item in items if item.case.status != CaseStatus.ACCEPTED]
    if stale:
        raise ValidationError(
            [f"Case #{c.pk} is {c.get_status_display()}; remove it before approving." for c in stale],
            code="cases_not_accepted",
        )
    approved = batch_transition(batch=locked, to_status=BatchStatus.APPROVED, actor=by)
    for item in items:
        case_transition(case=item.case, to_status=CaseStatus.IN_BATCH, actor=by, note=f"In batch {approved.name}.")
    version = DatasetVersion.objects.create(batch=approved)
    # A broker that is down costs a delay, not the approval: the version waits `pending` and the sweeper sends it.
    job_send(BUILD_JOB, version)
    return approved
