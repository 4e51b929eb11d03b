"""Field validators shared by the model, the web forms and the API serializers."""

import unicodedata

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.utils.deconstruct import deconstructible

# Line breaks and tabs are part of real prompts; every other control character
# (including NUL, which PostgreSQL cannot store) is refused.
_ALLOWED_CONTROLS = {"\n", "\r", "\t"}
# Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) reorder
# how the text around them is shown: a prompt, a name or a link can be made to read as
# something else than it is ("Trojan Source"). No real prompt needs them; the marks
# U+200E/U+200F, which only set a direction, stay allowed.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def validate_clean_text(value: str) -> None:
    for position, char in enumerate(value, start=1):
        if char in _ALLOWED_CONTROLS:
            continue
        if char in _BIDI_CONTROLS:
            raise ValidationError(
                "Contains a bidirectional control character (U+%(code)04X) at position %(position)d, which changes "
                "how the text is displayed; remove it or paste the text again as plain text.",
                code="bidi_character",
                params={"code": ord(char), "position": position},
            )
        category = unicodedata.category(char)
        if category in {"Cc", "Cs"} or char in {"\ufffe", "\uffff"}:
            raise ValidationError(
                "Contains an invalid control character (U+%(code)04X) at position %(position)d; "
                "remove it or paste the text again as plain text.",
                code="control_character",
                params={"code": ord(char), "position": position},
            )


# Links people give are shown as links: only the web's schemes (no javascript:, data:, file:, ftp:).
validate_http_url = URLValidator(schemes=["http", "https"], message="Enter a valid http:// or https:// URL.")


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


@deconstructible
class ExamplePairsValidator:
    """A case's additional example pairs: a list of {"input": str, "output": str}, each within the text limit."""

    def __init__(self, *, max_items: int, max_length: int) -> None:
        self.max_items = max_items
        self.max_length = max_length

    def __call__(self, value: object) -> None:
        if not isinstance(value, list):
            raise ValidationError("Additional examples must be a list of input/output pairs.", code="invalid_examples")
        if len(value) > self.max_items:
            raise ValidationError(f"At most {self.max_items} additional examples.", code="too_many_examples")
        for number, pair in enumerate(value, start=1):
            if not isinstance(pair, dict) or set(pair) != {"input", "output"}:
                raise ValidationError(
                    f"Additional example {number} must have exactly the keys 'input' and 'output'.",
                    code="invalid_example",
                )
            for key in ("input", "output"):
                self._check_text(number=number, key=key, text=pair[key])

    def _check_text(self, *, number: int, key: str, text: object) -> None:
        where = f"Additional example {number}: the {key}"
        if not isinstance(text, str) or not text.strip():
            raise ValidationError(f"{where} must be a non-empty string.", code="blank_example")
        if len(text) > self.max_length:
            raise ValidationError(
                f"{where} must be at most {self.max_length} characters (it has {len(text)}).", code="example_too_long"
            )
        try:
            validate_clean_text(text)
        except ValidationError as exc:
            raise ValidationError(f"{where}: {' '.join(exc.messages)}", code="control_character") from exc

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ExamplePairsValidator)
            and (self.max_items, self.max_length) == (other.max_items, other.max_length)
        )
