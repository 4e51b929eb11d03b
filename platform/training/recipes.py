"""A run's recipe: the hyper-parameters a maintainer picks, and the trainer config they become.

The platform may not import `trainer`, so the constraints of `trainer/runconfig.py`
are repeated here to give a clear form error before anything is queued; the
trainer validates the written YAML again and has the last word (a refused config
fails the run with the trainer's message).
"""

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError

METHODS = ("lora", "full")
PRECISIONS = ("auto", "bf16", "fp32")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "conv1", "conv2")
DEFAULT_LORA_TARGETS = LORA_TARGETS[:7]
# Upper bounds: far above any run the platform trains (Yuan 2.0's context is 8K tokens; 2B
# fine-tunes take thousands of steps), low enough that a typo such as 1e30 steps is refused
# with a form error instead of being queued for a GPU worker to choke on.
MAX_VALUES: dict[str, int | float] = {
    "max_steps": 1_000_000,
    "micro_batch_size": 1024,
    "grad_accum": 1024,
    "lr": 1.0,
    "warmup_steps": 1_000_000,
    "weight_decay": 1.0,
    "seed": 2**32 - 1,
    "seq_len": 65_536,
    "lora_r": 1024,
    "lora_alpha": 4096.0,
    "checkpoint_every": 1_000_000,
    "eval_max_new_tokens": 4096,
    "eval_max_examples": 1_000_000,
}


@dataclass(frozen=True)
class Recipe:
    """What `TrainingRun.recipe` stores. Field names follow the trainer's config sections."""

    method: str = "lora"
    max_steps: int = 100
    micro_batch_size: int = 4
    grad_accum: int = 1
    lr: float = 2e-4
    warmup_steps: int = 10
    weight_decay: float = 0.0
    seed: int = 1234
    precision: str = "auto"
    seq_len: int = 512
    #: Share of the training mix taken from the trainer's built-in general set (against forgetting).
    replay_ratio: float = 0.0
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    checkpoint_every: int = 50
    eval_max_new_tokens: int = 64
    eval_max_examples: int = 0

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["lora_targets"] = list(self.lora_targets)
        return data


def recipe_from_json(raw: dict[str, Any]) -> Recipe:
    """A validated Recipe from stored or submitted JSON; unknown keys are refused by name."""
    known = {f.name for f in fields(Recipe)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValidationError(f"Unknown recipe field(s): {', '.join(unknown)}.")
    data = dict(raw)
    if "lora_targets" in data:
        data["lora_targets"] = tuple(data["lora_targets"])
    recipe = Recipe(**data)
    recipe_validate(recipe=recipe)
    return recipe


def recipe_validate(*, recipe: Recipe) -> None:
    """Raise a ValidationError naming every field that the trainer would refuse."""
    errors: dict[str, str] = {}
    for name in ("max_steps", "micro_batch_size", "grad_accum", "lora_r", "eval_max_new_tokens"):
        if not _is_int(getattr(recipe, name)) or getattr(recipe, name) < 1:
            errors[name] = "Must be a whole number of at least 1."
    for name in ("seed", "checkpoint_every", "eval_max_examples", "warmup_steps"):
        if not _is_int(getattr(recipe, name)) or getattr(recipe, name) < 0:
            errors[name] = "Must be a whole number, 0 or more."
    if recipe.method not in METHODS:
        errors["method"] = f"Choose one of {', '.join(METHODS)}."
    if recipe.precision not in PRECISIONS:
        errors["precision"] = f"Choose one of {', '.join(PRECISIONS)}."
    if not _is_number(recipe.lr) or recipe.lr <= 0:
        errors["lr"] = "The learning rate must be a positive number."
    if "warmup_steps" not in errors and "max_steps" not in errors and recipe.warmup_steps > recipe.max_steps:
        errors["warmup_steps"] = "Warm-up cannot be longer than the run (max_steps)."
    if not _is_number(recipe.weight_decay) or recipe.weight_decay < 0:
        errors["weight_decay"] = "Must be 0 or more."
    if not _is_int(recipe.seq_len) or recipe.seq_len < 8:
        errors["seq_len"] = "Rows must hold at least 8 tokens."
    if not _is_number(recipe.replay_ratio) or not 0 <= recipe.replay_ratio < 1:
        errors["replay_ratio"] = "Must be at least 0 and below 1."
    if not _is_number(recipe.lora_alpha) or recipe.lora_alpha <= 0:
        errors["lora_alpha"] = "LoRA alpha must be positive."
    if not _is_number(recipe.lora_dropout) or not 0 <= recipe.lora_dropout < 1:
        errors["lora_dropout"] = "LoRA dropout must be at least 0 and below 1."
    for name, high in MAX_VALUES.items():
        if name not in errors and getattr(recipe, name) > high:
            errors[name] = f"Must be at most {high:,}."
    bad_targets = sorted(set(recipe.lora_targets) - set(LORA_TARGETS))
    if not recipe.lora_targets or bad_targets:
        errors["lora_targets"] = f"Choose modules among {', '.join(LORA_TARGETS)}."
    if errors:
        raise ValidationError(errors)


def run_config_build(*, recipe: Recipe, base_checkpoint: Path, dataset_path: Path, run_dir: Path) -> dict[str, Any]:
    """The trainer's run config (trainer/runconfig.py, section by section) with absolute paths."""
    return {
        "model": {"path": str(base_checkpoint)},
        "data": {
            "path": str(dataset_path),
            "train_split": "train",
            "eval_split": "eval",
            "seq_len": recipe.seq_len,
            "pack": True,
            "replay_path": "builtin" if recipe.replay_ratio > 0 else None,
            "replay_ratio": float(recipe.replay_ratio),
        },
        "output_dir": str(run_dir),
        "train": {
            "method": recipe.method,
            "max_steps": recipe.max_steps,
            "micro_batch_size": recipe.micro_batch_size,
            "grad_accum": recipe.grad_accum,
            "lr": float(recipe.lr),
            "warmup_steps": recipe.warmup_steps,
            "weight_decay": float(recipe.weight_decay),
            "seed": recipe.seed,
            "precision": recipe.precision,
        },
        "lora": {
            "r": recipe.lora_r,
            "alpha": float(recipe.lora_alpha),
            "dropout": float(recipe.lora_dropout),
            "targets": list(recipe.lora_targets),
        },
        "checkpoint": {"every_steps": recipe.checkpoint_every, "keep_last": 2},
        "eval": {"generate": True, "max_new_tokens": recipe.eval_max_new_tokens,
                 "max_examples": recipe.eval_max_examples},
        "export": True,
    }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


# Recipes a maintainer starts from; the form shows them as presets.
TINY_DEMO_RECIPE = Recipe(method="lora", max_steps=40, micro_batch_size=4, lr=3e-3, warmup_steps=4, seq_len=256,
                          lora_r=8, lora_alpha=16.0, lora_targets=LORA_TARGETS, checkpoint_every=20,
                          eval_max_new_tokens=24)
# What `manage.py demo` trains: a full fine-tune of the bundled tiny model (2 layers,
# 64 wide) on the demo cases. LoRA at this size barely moves the requested cases, and
# the base has memorised the general set it was built from, so without replay any
# fine-tune forgets it and the evaluation blocks the release. A 0.6 replay share
# draws every general row at least once for a batch of 30 or more cases; 400 steps
# take about 15 s on 2 cores (measured with `trainer eval`: cases chrF 13 -> 20,
# loss 5.1 -> 3.2; general loss 0.03 -> 0.02).
DEMO_RECIPE = Recipe(method="full", max_steps=400, micro_batch_size=4, lr=1e-3, warmup_steps=10, seq_len=256,
                     replay_ratio=0.6, checkpoint_every=100, eval_max_new_tokens=24)
