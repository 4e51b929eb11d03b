from datetime import datetime, time

from django import forms
from django.utils import timezone

from curation.services.batches import BATCH_NAME_RE
from intake.validators import validate_clean_text

BATCH_LIMIT_MAX = 100_000
# A row's loss weight: a few times the default at most, or one case outweighs the whole batch.
WEIGHT_MAX = 100.0


class BatchCreateForm(forms.Form):
    name = forms.RegexField(
        regex=BATCH_NAME_RE,
        required=False,
        max_length=100,
        help_text="Letters, digits, '.', '_' and '-'; it names the dataset folder. Empty: batch-<date-time>.",
    )
    created_before = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Only cases submitted before this day (the monthly plan uses the 1st). Empty: all accepted cases.",
    )
    limit = forms.IntegerField(
        required=False,
        min_value=1,
        # A bound far above any month's batch: larger numbers overflow the database's LIMIT (a 500 before).
        max_value=BATCH_LIMIT_MAX,
        help_text="Keep only the first N cases (highest priority, then most voted).",
    )
    notes = forms.CharField(
        required=False, max_length=2000, validators=[validate_clean_text], widget=forms.Textarea(attrs={"rows": 2})
    )

    def cleaned_cutoff(self) -> datetime | None:
        day = self.cleaned_data.get("created_before")
        return timezone.make_aware(datetime.combine(day, time.min)) if day else None


class BatchCaseAddForm(forms.Form):
    case_id = forms.IntegerField(min_value=1, label="Case number")
    weight = forms.FloatField(
        required=False, min_value=0.01, max_value=WEIGHT_MAX, initial=1.0, help_text="Training weight (default 1)."
    )

    def clean_weight(self) -> float:
        return self.cleaned_data["weight"] or 1.0


class BenchmarkRegisterForm(forms.Form):
    name = forms.SlugField(max_length=60, help_text="Letters, digits, '-' and '_' (e.g. ceval-mini).")
    description = forms.CharField(required=False, max_length=300, validators=[validate_clean_text])
    file = forms.FileField(help_text='JSONL, one item a line: {"id", "prompt", "answer"} '
                                     "(question/input and response/output/target are read too).")
