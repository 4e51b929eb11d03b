from typing import Any

from rest_framework import serializers

from intake.models import MODEL_VERSION_MAX, SCENARIO_MAX, TEXT_MAX, CaseLanguage, FeedbackCase
from intake.pii import mask
from intake.services import CaseInput
from intake.validators import validate_clean_text, validate_http_url, validate_not_blank


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of quietly turning them into text."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictTrueField(serializers.BooleanField):
    default_error_messages = {
        "invalid": "Must be the JSON value true.",
        "not_true": "You must agree to share this case under the CC-BY-4.0 data license (send true).",
    }

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        if data is not True:
            self.fail("not_true")
        return True


def _text(max_length: int, *, required: bool = True) -> StrictCharField:
    validators = [validate_clean_text, validate_not_blank] if required else [validate_clean_text]
    return StrictCharField(
        max_length=max_length, required=required, allow_blank=not required, trim_whitespace=False, validators=validators
    )


class CaseSubmitSerializer(serializers.Serializer):
    scenario = _text(SCENARIO_MAX)
    prompt = _text(TEXT_MAX)
    bad_output = _text(TEXT_MAX, required=False)
    expected_output = _text(TEXT_MAX)
    language = serializers.ChoiceField(choices=CaseLanguage.choices, default=CaseLanguage.ZH)
    tags = serializers.ListField(
        child=StrictCharField(max_length=40, validators=[validate_clean_text]), max_length=10, default=list
    )
    model_version = _text(MODEL_VERSION_MAX, required=False)
    source_url = serializers.URLField(
        max_length=500, required=False, allow_blank=True, default="", validators=[validate_http_url]
    )
    license_consent = StrictTrueField()

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # Unknown fields are refused: a typo such as "expected" would otherwise be
        # silently dropped and the person told their case was recorded as sent.
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)

    def to_case_input(self) -> CaseInput:
        return CaseInput.from_cleaned(self.validated_data, tags=self.validated_data["tags"])


class CaseSerializer(serializers.ModelSerializer):
    class Meta:
        model = FeedbackCase
        fields = [
            "id", "uid", "source", "source_url", "status", "status_reason", "duplicate_of", "scenario", "prompt",
            "bad_output", "expected_output", "language", "tags", "model_version", "vote_count", "created_at",
            "personal_data",
        ]  # fmt: skip
        read_only_fields = fields


MASKED_FIELDS = ("prompt", "expected_output")


class PublicRequestSerializer(serializers.ModelSerializer):
    class Meta:
        model = FeedbackCase
        fields = [
            "id",
            "status",
            "scenario",
            "prompt",
            "expected_output",
            "language",
            "tags",
            "vote_count",
            "created_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance: FeedbackCase) -> dict[str, Any]:
        # A public list: personal data people typed goes out masked, as on the public pages.
        data = super().to_representation(instance)
        for name in MASKED_FIELDS:
            data[name] = mask(data[name] or "")
        return data
