from datetime import datetime, time

from django import forms
from django.utils import timezone

from curation.services.batches import BATCH_NAME_RE


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
        required=False, min_value=1, help_text="Keep only the first N cases (highest priority, then most voted)."
    )
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def cleaned_cutoff(self) -> datetime | None:
        day = self.cleaned_data.get("created_before")
        return timezone.make_aware(datetime.combine(day, time.min)) if day else None


class BatchCaseAddForm(forms.Form):
    case_id = forms.IntegerField(min_value=1, label="Case number")
    weight = forms.FloatField(required=False, min_value=0.01, initial=1.0, help_text="Training weight (default 1).")

    def clean_weight(self) -> float:
        return self.cleaned_data["weight"] or 1.0
