"""`{% releases_for_case case as releases %}`: lets intake's case page show the releases that addressed it
without the intake view knowing about releases."""

from django import template
from django.db.models import QuerySet

from intake.models import FeedbackCase
from releases.models import Release
from releases.selectors import releases_for_case as select_releases_for_case

register = template.Library()


@register.simple_tag
def releases_for_case(case: FeedbackCase) -> QuerySet[Release]:
    return select_releases_for_case(case=case)
