"""`{% releases_for_case case as releases %}`: lets intake's case page show the releases that addressed it
without the intake view knowing about releases; `{% cases_with_releases cases as rows %}` does the same
for a list of cases (pairs of case and releases) in one query."""

from django import template

from intake.models import FeedbackCase
from releases.models import Release
from releases.selectors import releases_by_case
from releases.selectors import releases_for_case as select_releases_for_case

register = template.Library()


@register.simple_tag
def releases_for_case(case: FeedbackCase) -> list[Release]:
    return select_releases_for_case(case=case)


@register.simple_tag
def cases_with_releases(cases: list[FeedbackCase]) -> list[tuple[FeedbackCase, list[Release]]]:
    by_case = releases_by_case(case_ids=[case.pk for case in cases])
    return [(case, by_case[case.pk]) for case in cases]
