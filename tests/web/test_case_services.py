"""The case status machine, its audit trail and votes (intake.services)."""

from collections.abc import Callable

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from accounts.models import User
from intake.models import CaseEvent, CaseStatus, FeedbackCase
from intake.services import (
    CaseInput,
    case_answer_info_request,
    case_create,
    case_transition,
    case_unvote,
    case_vote,
    cases_bulk_transition,
)

from .conftest import MATH_CASE

pytestmark = pytest.mark.django_db


def test_create_records_the_case_and_a_created_event(contributor: User) -> None:
    case = case_create(author=contributor, data=MATH_CASE)
    case.refresh_from_db()
    assert (case.status, case.source, case.author_name, case.tags) == ("new", "web", "li_ming", ["math"])
    assert "小明" in case.search_text
    assert list(case.events.values_list("action", "to_status")) == [("created", "new")]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"expected_output": "   "}, "expected_output"),
        ({"prompt": "bad\x00byte"}, "prompt"),
        ({"scenario": "x\x1b[31m"}, "scenario"),
        ({"prompt": "长" * 20_001}, "prompt"),
        ({"license_consent": False}, "license_consent"),
        ({"tags": ("t" * 41,)}, "tags"),
        ({"language": "klingon"}, "language"),
    ],
)
def test_create_refuses_bad_input_and_writes_nothing(contributor: User, changes: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        case_create(author=contributor, data=CaseInput(**{**MATH_CASE.__dict__, **changes}))
    assert field in info.value.message_dict
    assert FeedbackCase.objects.count() == 0
    assert CaseEvent.objects.count() == 0


def test_maintainer_accepts_and_the_trail_says_who(make_case: Callable, maintainer: User) -> None:
    case = make_case()
    case_transition(case=case, to_status=CaseStatus.ACCEPTED, actor=maintainer)
    case.refresh_from_db()
    assert case.status == "accepted" and case.status_changed_at is not None
    event = case.events.last()
    assert (event.actor, event.from_status, event.to_status) == (maintainer, "new", "accepted")


def test_contributor_cannot_triage(make_case: Callable, contributor: User) -> None:
    case = make_case()
    with pytest.raises(PermissionDenied):
        case_transition(case=case, to_status=CaseStatus.ACCEPTED, actor=contributor)
    case.refresh_from_db()
    assert case.status == "new" and case.events.count() == 1


def test_reject_needs_a_reason_and_needs_info_a_question(make_case: Callable, maintainer: User) -> None:
    case = make_case()
    for status in (CaseStatus.REJECTED, CaseStatus.NEEDS_INFO):
        with pytest.raises(ValidationError):
            case_transition(case=case, to_status=status, actor=maintainer, note="  ")
    case_transition(case=case, to_status=CaseStatus.REJECTED, actor=maintainer, note="与训练目标无关")
    case.refresh_from_db()
    assert case.status_reason == "与训练目标无关"


def test_transitions_outside_the_machine_are_refused(make_case: Callable, maintainer: User) -> None:
    case = make_case()
    with pytest.raises(ValidationError, match="cannot become"):
        case_transition(case=case, to_status=CaseStatus.RELEASED, actor=None)
    case_transition(case=case, to_status=CaseStatus.ACCEPTED, actor=maintainer)
    with pytest.raises(ValidationError):
        case_transition(case=case, to_status=CaseStatus.ACCEPTED, actor=maintainer)


def test_the_loop_moves_accepted_cases_through_batch_training_release(make_case: Callable, maintainer: User) -> None:
    case = make_case()
    case_transition(case=case, to_status=CaseStatus.ACCEPTED, actor=maintainer)
    for status in (CaseStatus.IN_BATCH, CaseStatus.TRAINED, CaseStatus.RELEASED):
        case = case_transition(case=case, to_status=status, actor=None)
    assert list(case.events.values_list("to_status", flat=True)) == [
        "new",
        "accepted",
        "in-batch",
        "trained",
        "released",
    ]


def test_duplicate_points_at_the_original_not_at_another_duplicate(make_case: Callable, maintainer: User) -> None:
    original, first_dup, second_dup = make_case(), make_case(), make_case()
    case_transition(case=first_dup, to_status=CaseStatus.DUPLICATE, actor=maintainer, duplicate_of_id=original.pk)
    case_transition(case=second_dup, to_status=CaseStatus.DUPLICATE, actor=maintainer, duplicate_of_id=first_dup.pk)
    second_dup.refresh_from_db()
    assert second_dup.duplicate_of_id == original.pk
    with pytest.raises(ValidationError):
        case_transition(case=original, to_status=CaseStatus.DUPLICATE, actor=maintainer, duplicate_of_id=original.pk)
    with pytest.raises(ValidationError):
        case_transition(case=original, to_status=CaseStatus.DUPLICATE, actor=maintainer, duplicate_of_id=999_999)


def test_author_withdraws_own_case_but_not_anothers(
    make_case: Callable, contributor: User, other_contributor: User
) -> None:
    case = make_case()
    with pytest.raises(PermissionDenied):
        case_transition(case=case, to_status=CaseStatus.WITHDRAWN, actor=other_contributor)
    case_transition(case=case, to_status=CaseStatus.WITHDRAWN, actor=contributor)
    case.refresh_from_db()
    assert case.status == "withdrawn"


def test_answering_an_info_request_records_the_changes_and_returns_to_new(
    make_case: Callable, contributor: User, maintainer: User
) -> None:
    case = make_case()
    case_transition(case=case, to_status=CaseStatus.NEEDS_INFO, actor=maintainer, note="请给出模型版本")
    data = CaseInput(**{**MATH_CASE.__dict__, "model_version": "Yuan2-102B-hf", "prompt": "新的输入"})
    case = case_answer_info_request(case=case, actor=contributor, data=data)
    assert case.status == "new"
    edit = case.events.get(action="edited")
    assert edit.changes["prompt"] == {"from": MATH_CASE.prompt, "to": "新的输入"}
    assert "新的输入" in FeedbackCase.objects.get(pk=case.pk).search_text


def test_bulk_triage_is_all_or_nothing(make_case: Callable, maintainer: User) -> None:
    cases = [make_case() for _ in range(3)]
    case_transition(case=cases[2], to_status=CaseStatus.ACCEPTED, actor=maintainer)
    with pytest.raises(ValidationError) as info:
        cases_bulk_transition(
            case_ids=[c.pk for c in cases] + [424242], to_status=CaseStatus.ACCEPTED, actor=maintainer
        )
    assert any("424242" in message for message in info.value.messages)
    assert any(f"#{cases[2].pk}" in message for message in info.value.messages)
    assert FeedbackCase.objects.filter(status="accepted").count() == 1
    assert (
        cases_bulk_transition(case_ids=[c.pk for c in cases[:2]], to_status=CaseStatus.ACCEPTED, actor=maintainer) == 2
    )
    assert FeedbackCase.objects.filter(status="accepted").count() == 3


def test_votes_count_once_per_person_and_only_on_accepted(
    make_case: Callable, maintainer: User, contributor: User, other_contributor: User
) -> None:
    case = make_case()
    with pytest.raises(ValidationError):
        case_vote(case=case, user=other_contributor)
    case = case_transition(case=case, to_status=CaseStatus.ACCEPTED, actor=maintainer)
    assert case_vote(case=case, user=other_contributor) is True
    assert case_vote(case=case, user=other_contributor) is False
    assert case_vote(case=case, user=contributor) is True
    case.refresh_from_db()
    assert case.vote_count == 2
    assert case_unvote(case=case, user=contributor) is True
    assert case_unvote(case=case, user=contributor) is False
    case.refresh_from_db()
    assert case.vote_count == 1


def _waiting_for_an_example(make_case: Callable, maintainer: User) -> FeedbackCase:
    from intake.selectors import EXAMPLE_PLACEHOLDERS

    # What GitHub intake stores for a request without an example: the placeholder, and needs-info.
    case = make_case(expected_output=next(iter(EXAMPLE_PLACEHOLDERS)))
    return case_transition(case=case, to_status=CaseStatus.NEEDS_INFO, actor=maintainer, note="Add an example.")


def test_a_case_whose_expected_output_is_a_placeholder_cannot_be_accepted(
    make_case: Callable, maintainer: User
) -> None:
    case = _waiting_for_an_example(make_case, maintainer)
    with pytest.raises(ValidationError, match="expected output is still missing") as info:
        case_transition(case=case, to_status=CaseStatus.ACCEPTED, actor=maintainer)
    assert info.value.error_list[0].code == "example_missing"
    case.refresh_from_db()
    assert case.status == CaseStatus.NEEDS_INFO
    assert not CaseEvent.objects.filter(case=case, to_status=CaseStatus.ACCEPTED).exists()
    # Rejecting it stays possible.
    rejected = case_transition(case=case, to_status=CaseStatus.REJECTED, actor=maintainer, note="Stale.")
    assert rejected.status == CaseStatus.REJECTED


def test_bulk_accept_refuses_the_whole_selection_when_one_case_lacks_its_example(
    make_case: Callable, maintainer: User
) -> None:
    ready = make_case()
    waiting = _waiting_for_an_example(make_case, maintainer)
    with pytest.raises(ValidationError) as info:
        cases_bulk_transition(case_ids=[ready.pk, waiting.pk], to_status=CaseStatus.ACCEPTED, actor=maintainer)
    assert info.value.messages == [
        f"Case #{waiting.pk} cannot be accepted: its expected output is still missing (a placeholder). "
        "Add a real example, or ask for one (needs info)."
    ]
    assert not FeedbackCase.objects.filter(status=CaseStatus.ACCEPTED).exists()


def test_the_placeholder_intake_refuses_is_the_one_github_intake_stores() -> None:
    from ghsync.services.items import EXAMPLE_NEEDED
    from intake.selectors import EXAMPLE_PLACEHOLDERS, case_has_training_example

    assert EXAMPLE_NEEDED in EXAMPLE_PLACEHOLDERS
    assert not case_has_training_example(FeedbackCase(expected_output=f"  {EXAMPLE_NEEDED}\n"))
    assert not case_has_training_example(FeedbackCase(expected_output=" \n"))
    assert case_has_training_example(FeedbackCase(expected_output="3 + 5 = 8，8 − 2 = 6。"))
