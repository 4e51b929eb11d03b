from django import forms

from intake.validators import validate_clean_text
from releases.services import TAG_RE


class PublishForm(forms.Form):
    tag = forms.RegexField(
        regex=TAG_RE,
        required=False,
        max_length=80,
        help_text="Letters, digits, '_' and '-'. Leave empty for <batch>-run-<run id>.",
    )
    override_reason = forms.CharField(
        required=False,
        validators=[validate_clean_text],
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Only when the evaluation blocks publishing: why this release should go out anyway. "
        "It is recorded on the evaluation and in the model card.",
    )

    def clean_tag(self) -> str | None:
        return self.cleaned_data["tag"] or None
