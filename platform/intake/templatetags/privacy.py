"""Personal data on pages: `{{ text|pii_masked }}` shows a detected phone, ID, email... masked (`intake.pii.mask`).

`{{ text|pii_masked:reveal }}` shows the text as typed when `reveal` is true: the case's
author and the maintainers see what was written; everyone else sees it masked.
"""

from django import template

from intake.pii import mask

register = template.Library()


@register.filter
def pii_masked(value: object, reveal: bool = False) -> str:
    text = "" if value is None else str(value)
    return text if reveal else mask(text)
