from dataclasses import fields as dataclass_fields

from django import forms
from django.core.exceptions import ValidationError

from curation.models import DatasetVersion, DatasetVersionStatus
from intake.validators import validate_clean_text
from training.recipes import LORA_TARGETS, METHODS, PRECISIONS, Recipe, recipe_validate
from training.selectors import DEMO_BASE

DEFAULTS = Recipe()


class RunStartForm(forms.Form):
    """Start a run: the dataset version, the base checkpoint and the recipe (validated like the trainer does)."""

    version = forms.ModelChoiceField(
        queryset=DatasetVersion.objects.filter(status=DatasetVersionStatus.READY).select_related("batch"),
        label="Dataset version",
    )
    base_checkpoint = forms.CharField(
        max_length=500, initial=DEMO_BASE, validators=[validate_clean_text],
        help_text='An absolute folder in the HF Yuan2 layout on the GPU workers, or "demo" for the bundled tiny model.',
    )
    method = forms.ChoiceField(
        choices=[(m, m) for m in METHODS], initial=DEFAULTS.method,
        help_text="LoRA trains small adapters (and merges them at export); full trains all weights.",
    )
    max_steps = forms.IntegerField(min_value=1, initial=DEFAULTS.max_steps)
    micro_batch_size = forms.IntegerField(min_value=1, initial=DEFAULTS.micro_batch_size)
    grad_accum = forms.IntegerField(min_value=1, initial=DEFAULTS.grad_accum, label="Gradient accumulation")
    lr = forms.FloatField(initial=DEFAULTS.lr, label="Learning rate")
    warmup_steps = forms.IntegerField(min_value=0, initial=DEFAULTS.warmup_steps)
    weight_decay = forms.FloatField(min_value=0, initial=DEFAULTS.weight_decay)
    seq_len = forms.IntegerField(min_value=8, initial=DEFAULTS.seq_len, label="Sequence length (tokens per row)")
    replay_ratio = forms.FloatField(initial=DEFAULTS.replay_ratio,
                                    help_text="Share of the general set mixed in against forgetting, in [0, 1).")
    seed = forms.IntegerField(min_value=0, initial=DEFAULTS.seed)
    precision = forms.ChoiceField(choices=[(p, p) for p in PRECISIONS], initial=DEFAULTS.precision)
    lora_r = forms.IntegerField(min_value=1, initial=DEFAULTS.lora_r, label="LoRA rank")
    lora_alpha = forms.FloatField(initial=DEFAULTS.lora_alpha, label="LoRA alpha")
    lora_dropout = forms.FloatField(initial=DEFAULTS.lora_dropout, label="LoRA dropout")
    lora_targets = forms.MultipleChoiceField(
        choices=[(t, t) for t in LORA_TARGETS], initial=list(DEFAULTS.lora_targets),
        widget=forms.CheckboxSelectMultiple, label="LoRA targets", help_text="conv1/conv2 are the LFA filters.",
    )
    checkpoint_every = forms.IntegerField(min_value=0, initial=DEFAULTS.checkpoint_every,
                                          help_text="Save a resumable checkpoint every N steps (0: only at the end).")
    eval_max_new_tokens = forms.IntegerField(min_value=1, initial=DEFAULTS.eval_max_new_tokens)

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        try:
            recipe_validate(recipe=self.recipe())
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                self.add_error(name if name in self.fields else None, messages)
        return data

    def recipe(self) -> Recipe:
        names = {f.name for f in dataclass_fields(Recipe)}
        values = {k: v for k, v in self.cleaned_data.items() if k in names}
        values["lora_targets"] = tuple(values.get("lora_targets") or ())
        return Recipe(**values)


class OverrideForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000,
                             validators=[validate_clean_text],
                             help_text="Why this release should go out although the evaluation blocks it.")
