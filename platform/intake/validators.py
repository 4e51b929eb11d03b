"""Field validators shared by the model, the web forms and the API serializers."""

import unicodedata

from django.core.exceptions import ValidationError

# Line breaks and tabs are part of real prompts; every other control character
# (including NUL, which PostgreSQL cannot store) is refused.
_ALLOWED_CONTROLS = {"\n", "\r", "\t"}


def validate_clean_text(value: str) -> None:
    for position, char in enumerate(value, start=1):
        if char in _ALLOWED_CONTROLS:
            continue
        category = unicodedata.category(char)
        if category in {"Cc", "Cs"} or char in {"\ufffe", "\uffff"}:
            raise ValidationError(
                "Contains an invalid control character (U+%(code)04X) at position %(position)d; "
                "remove it or paste the text again as plain text.",
                code="control_character",
                params={"code": ord(char), "position": position},
            )


def validate_not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("This field cannot be empty or only whitespace.", code="blank")


def validate_tags(value: object) -> None:
    if not isinstance(value, list):
        raise ValidationError("Tags must be a list of short strings.", code="invalid_tags")
    if len(value) > 10:
        raise ValidationError("At most 10 tags.", code="too_many_tags")
    for tag in value:
        if not isinstance(tag, str) or not tag.strip():
            raise ValidationError("Each tag must be a non-empty string.", code="invalid_tag")
        if len(tag) > 40:
            raise ValidationError("Each tag must be at most 40 characters.", code="tag_too_long")
        validate_clean_text(tag)
