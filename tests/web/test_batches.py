"""Dataset batches (curation.services.batches): create from accepted cases, review, approve; approval is final."""

from datetime import date, datetime
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from accounts.models import User
from curation.models import BatchCase, BatchStatus, DatasetBatch, DatasetVersion, DatasetVersionStatus
from curation.selectors import batch_review
from curation.services import (
    batch_approve,
    batch_case_add,
    batch_case_remove,
    batch_create,
    batch_create_monthly,
    batch_discard,
)
from curation.tasks import create_monthly_batch
from intake.models import CaseStatus, FeedbackCase
from intake.services import case_create, case_transition

from .loop_factories import CASES, accepted_cases

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path: Path) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


def _ids(batch: DatasetBatch) -> list[int]:
    return list(BatchCase.objects.filter(batch=batch).order_by("position").values_list("case_id", flat=True))


def test_default_batch_takes_every_accepted_case_highest_priority_first(contributor: User, maintainer: User) -> None:
    cases = accepted_cases(author=contributor, maintainer=maintainer, count=4)
    FeedbackCase.objects.filter(pk=cases[2].pk).update(priority=5)
    new_case = case_create(author=contributor, data=CASES[5])  # not triaged yet: left out
    batch = batch_create(by=maintainer, name="plan-2024-01")
    assert batch.status == BatchStatus.DRAFT and batch.created_by == maintainer
    assert _ids(batch) == [cases[2].pk, cases[0].pk, cases[1].pk, cases[3].pk]
    assert new_case.pk not in _ids(batch)


def test_chosen_cases_must_be_accepted_and_names_are_slugs(contributor: User, maintainer: User) -> None:
    cases = accepted_cases(author=contributor, maintainer=maintainer, count=2)
    new_case = case_create(author=contributor, data=CASES[3])
    with pytest.raises(ValidationError) as info:
        batch_create(by=maintainer, name="b1", case_ids=[cases[0].pk, new_case.pk, 999_999])
    assert "no case #999999" in str(info.value) and f"#{new_case.pk} is new" in str(info.value)
    with pytest.raises(ValidationError, match="letters, digits"):
        batch_create(by=maintainer, name="../escape")
    batch_create(by=maintainer, name="b1", case_ids=[cases[1].pk])
    with pytest.raises(ValidationError, match="already a batch named b1"):
        batch_create(by=maintainer, name="b1")
    assert DatasetBatch.objects.count() == 1


def test_nothing_accepted_means_no_batch(maintainer: User) -> None:
    with pytest.raises(ValidationError, match="no accepted cases"):
        batch_create(by=maintainer)
    assert batch_create_monthly(today=date(2024, 2, 6)) is None
    assert not DatasetBatch.objects.exists()


def test_contributors_cannot_create_edit_or_approve(contributor: User, maintainer: User) -> None:
    accepted_cases(author=contributor, maintainer=maintainer, count=3)
    with pytest.raises(PermissionDenied):
        batch_create(by=contributor)
    batch = batch_create(by=maintainer)
    for action in (batch_approve, batch_discard):
        with pytest.raises(PermissionDenied):
            action(batch=batch, by=contributor)
    with pytest.raises(PermissionDenied):
        batch_case_remove(batch=batch, case_id=_ids(batch)[0], by=contributor)
    batch.refresh_from_db()
    assert batch.status == BatchStatus.DRAFT and len(_ids(batch)) == 3


def test_monthly_schedule_collects_the_previous_month_once(contributor: User, maintainer: User) -> None:
    cases = accepted_cases(author=contributor, maintainer=maintainer, count=3)
    # Submitted in January, February and March; the run on 6 March collects up to 1 March.
    for case, month in zip(cases, (1, 2, 3), strict=True):
        FeedbackCase.objects.filter(pk=case.pk).update(created_at=timezone.make_aware(datetime(2024, month, 15)))
    batch = batch_create_monthly(today=date(2024, 3, 6))
    assert batch is not None and batch.name == "plan-2024-02" and batch.created_by is None
    assert sorted(_ids(batch)) == [cases[0].pk, cases[1].pk]
    assert batch.period_end == timezone.make_aware(datetime(2024, 3, 1))
    # Safe to run twice: the same month gives the same batch.
    assert batch_create_monthly(today=date(2024, 3, 20)) == batch
    assert DatasetBatch.objects.count() == 1


def test_monthly_task_is_scheduled_on_the_6th(settings) -> None:
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == create_monthly_batch.name)
    assert entry["schedule"].day_of_month == {6}
    assert create_monthly_batch.run() is None  # nothing accepted yet: no batch


def test_review_counts_and_changes_since_the_previous_batch(contributor: User, maintainer: User) -> None:
    first_cases = accepted_cases(author=contributor, maintainer=maintainer, count=4)
    first = batch_create(by=maintainer, name="first")
    batch_approve(batch=first, by=maintainer)
    later = [case_transition(case=case_create(author=contributor, data=data), to_status="accepted", actor=maintainer)
             for data in CASES[4:7]]
    second = batch_create(by=maintainer, name="second")
    review = batch_review(batch=second)
    assert review.previous == first
    assert review.added_ids == sorted(case.pk for case in later)
    assert sorted(case.pk for case in review.removed) == sorted(case.pk for case in first_cases)
    assert dict(review.by_scenario) == {"SQL生成": 1, "Python code generation": 2}
    assert dict(review.by_language) == {"Chinese 中文": 1, "English": 2}
    assert review.not_accepted == []


def test_approve_records_who_and_when_moves_cases_and_enqueues_the_build(
    contributor: User, maintainer: User, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    from cotrain_site import celery_app

    sent: list[int] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args: sent.append(args[0]))
    cases = accepted_cases(author=contributor, maintainer=maintainer, count=3)
    batch = batch_create(by=maintainer, name="plan-a")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        approved = batch_approve(batch=batch, by=maintainer)
    assert approved.status == BatchStatus.APPROVED
    assert approved.approved_by == maintainer and approved.approved_at is not None
    version = DatasetVersion.objects.get(batch=batch)
    assert version.status == DatasetVersionStatus.PENDING
    assert len(callbacks) == 1 and sent == [version.pk]
    for case in cases:
        case.refresh_from_db()
        assert case.status == CaseStatus.IN_BATCH
        assert case.events.last().note == "In batch plan-a." and case.events.last().actor == maintainer


def test_nothing_is_enqueued_when_approval_fails(
    contributor: User, maintainer: User, django_capture_on_commit_callbacks
) -> None:
    cases = accepted_cases(author=contributor, maintainer=maintainer, count=3)
    batch = batch_create(by=maintainer)
    case_transition(case=cases[1], to_status=CaseStatus.REJECTED, actor=maintainer, note="Out of scope.")
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ValidationError, match="remove it"):
        batch_approve(batch=batch, by=maintainer)
    assert callbacks == [] and not DatasetVersion.objects.exists()
    assert batch_review(batch=batch).not_accepted == [cases[1]]
    batch.refresh_from_db()
    assert batch.status == BatchStatus.DRAFT
    cases[0].refresh_from_db()
    assert cases[0].status == CaseStatus.ACCEPTED  # all or nothing


def test_an_approved_batch_cannot_change(
    contributor: User, maintainer: User, django_capture_on_commit_callbacks
) -> None:
    accepted_cases(author=contributor, maintainer=maintainer, count=3)
    batch = batch_create(by=maintainer, name="final")
    with django_capture_on_commit_callbacks():
        batch_approve(batch=batch, by=maintainer)
    extra = case_transition(case=case_create(author=contributor, data=CASES[6]), to_status="accepted", actor=maintainer)
    members = _ids(batch)
    attempts = [
        lambda: batch_case_remove(batch=batch, case_id=members[0], by=maintainer),
        lambda: batch_case_add(batch=batch, case_id=extra.pk, by=maintainer),
        lambda: batch_discard(batch=batch, by=maintainer),
        lambda: batch_approve(batch=batch, by=maintainer),
    ]
    for attempt in attempts:
        with pytest.raises(ValidationError, match="only a draft batch can change"):
            attempt()
    assert _ids(batch) == members and DatasetVersion.objects.filter(batch=batch).count() == 1


def test_draft_edits_then_discard(contributor: User, maintainer: User) -> None:
    cases = accepted_cases(author=contributor, maintainer=maintainer, count=3)
    batch = batch_create(by=maintainer, case_ids=[cases[0].pk, cases[1].pk])
    batch_case_remove(batch=batch, case_id=cases[0].pk, by=maintainer)
    batch_case_add(batch=batch, case_id=cases[2].pk, by=maintainer, weight=2.0)
    assert _ids(batch) == [cases[1].pk, cases[2].pk]
    with pytest.raises(ValidationError, match="already in batch"):
        batch_case_add(batch=batch, case_id=cases[2].pk, by=maintainer)
    batch_discard(batch=batch, by=maintainer)
    # Discarded cases stay accepted, so the next default batch takes them again.
    assert sorted(_ids(batch_create(by=maintainer, name="again"))) == sorted(c.pk for c in cases)


def test_a_batch_of_one_case_cannot_be_approved(contributor: User, maintainer: User) -> None:
    accepted_cases(author=contributor, maintainer=maintainer, count=1)
    batch = batch_create(by=maintainer)
    with pytest.raises(ValidationError, match="at least 2 cases"):
        batch_approve(batch=batch, by=maintainer)
