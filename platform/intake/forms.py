import uuid
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from intake.models import CaseLanguage, CaseSource, CaseStatus, FeedbackCase
from intake.pii import KIND_NAMES, Finding, find_pii, mask
from intake.selectors import CaseFilters
from intake.services import CaseInput, validate_idempotency_key
from intake.validators import validate_clean_text, validate_tags


def _described(finding: Finding) -> str:
    # A hint of which value is meant, never a secret or an ID number in full (even to their author: screens are shared).
    hint = "" if finding.kind in ("SECRET", "ID") else f" ({mask(finding.value)})"
    return KIND_NAMES[finding.kind] + hint


class CaseForm(forms.ModelForm):
    """The submission form; each field explains itself, the page shows an example."""

    tags_text = forms.CharField(
        label="Tags",
        required=False,
        max_length=500,
        help_text="Optional, comma-separated: e.g. math, code, 长文本.",
    )
    license_consent = forms.BooleanField(
        required=True,
        label="I agree to share this case under the CC-BY-4.0 data license, for training and publishing open models.",
    )
    # Hidden until the text holds personal data: then the form comes back with a warning and this box.
    personal_data_ok = forms.BooleanField(
        required=False,
        widget=forms.HiddenInput,
        label="Submit it as it is: the personal data stays visible to me and the maintainers only.",
    )

    class Meta:
        model = FeedbackCase
        fields = ["scenario", "prompt", "bad_output", "expected_output", "language", "model_version"]
        help_texts = {
            "scenario": "The use case in a few words: what were you doing? e.g. 小学数学应用题 / SQL generation.",
            "prompt": "Exactly what you sent to the model (输入). Keep line breaks.",
            "bad_output": "What the model answered. Optional for requests of a new ability.",
            "expected_output": "What a good answer looks like (输出). Required: this is what the model is trained on.",
            "language": "The language of the input.",
            "model_version": "The model you ran, e.g. Yuan2-2B-Mars-hf or Yuan2-102B-hf.",
        }
        widgets = {
            "prompt": forms.Textarea(attrs={"rows": 6}),
            "bad_output": forms.Textarea(attrs={"rows": 4}),
            "expected_output": forms.Textarea(attrs={"rows": 6}),
        }

    def clean_tags_text(self) -> list[str]:
        tags = [tag.strip() for tag in self.cleaned_data["tags_text"].replace("，", ",").split(",") if tag.strip()]
        validate_tags(tags)
        return tags

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        texts = [cleaned.get(name) or "" for name in ("scenario", "prompt", "bad_output", "expected_output")]
        found = [finding for text in texts for finding in find_pii(text)]
        if found and not cleaned.get("personal_data_ok"):
            self.fields["personal_data_ok"].widget = forms.CheckboxInput()
            shown = ", ".join(dict.fromkeys(_described(finding) for finding in found))
            self.add_error(None, ValidationError(
                f"Your text seems to hold personal data: {shown}. Others would see it masked, and the training "
                "data gets a placeholder instead, but it is safer to remove it. To send it as it is, tick the box "
                "below and submit again.", code="personal_data"))
        return cleaned

    def to_input(self) -> CaseInput:
        return CaseInput.from_cleaned(self.cleaned_data, tags=self.cleaned_data["tags_text"])


class CaseSubmitForm(CaseForm):
    """The submission form with a key made when the page is shown: a second POST of it
    (a double click, a resend after a lost answer) gets the first case back."""

    idempotency_key = forms.CharField(required=False, widget=forms.HiddenInput, validators=[validate_idempotency_key])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["idempotency_key"].initial = uuid.uuid4().hex

    def clean_idempotency_key(self) -> str | None:
        return self.cleaned_data["idempotency_key"] or None


TRIAGE_ACTIONS = {
    "accept": CaseStatus.ACCEPTED,
    "reject": CaseStatus.REJECTED,
    "duplicate": CaseStatus.DUPLICATE,
    "needs-info": CaseStatus.NEEDS_INFO,
    "reopen": CaseStatus.NEW,
}


class TriageForm(forms.Form):
    action = forms.ChoiceField(choices=[(key, key) for key in TRIAGE_ACTIONS])
    note = forms.CharField(
        required=False,
        max_length=2000,
        validators=[validate_clean_text],
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required to reject (the reason) or to ask for information (the question).",
    )
    duplicate_of = forms.IntegerField(required=False, min_value=1, help_text="Case number of the original.")

    @property
    def to_status(self) -> str:
        return TRIAGE_ACTIONS[self.cleaned_data["action"]]


class BulkTriageForm(TriageForm):
    case_ids = forms.TypedMultipleChoiceField(coerce=int, choices=[], error_messages={"required": "Select cases."})

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # Any integer id is acceptable here; the service reports ids that do not exist.
        ids = self.data.getlist("case_ids") if hasattr(self.data, "getlist") else []
        self.fields["case_ids"].choices = [(value, value) for value in ids]

    def clean_case_ids(self) -> list[int]:
        ids = self.cleaned_data["case_ids"]
        if len(ids) > 500:
            raise ValidationError("At most 500 cases at once.")
        return ids


def _blank_choice(choices: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [("", "any"), *choices]


class TriageFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=_blank_choice(CaseStatus.choices))
    source = forms.ChoiceField(required=False, choices=_blank_choice(CaseSource.choices))
    language = forms.ChoiceField(required=False, choices=_blank_choice(CaseLanguage.choices))
    scenario = forms.CharField(required=False, max_length=200, validators=[validate_clean_text])
    q = forms.CharField(required=False, max_length=200, label="Search", validators=[validate_clean_text])
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def filters(self) -> CaseFilters:
        data = self.cleaned_data if self.is_valid() else {}
        return CaseFilters(
            status=data.get("status", ""),
            source=data.get("source", ""),
            language=data.get("language", ""),
            scenario=data.get("scenario", ""),
            q=data.get("q", ""),
        )
