"""Every read of runs and evaluations that a view, task or another app needs.

Progress beyond the few numbers on the row (the loss curve) is read from the run
folder's `metrics.jsonl`, the file the trainer writes; the database keeps no copy.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from trainer import contract

from curation.models import DatasetVersion
from training.models import ACTIVE_RUN_STATUSES, Evaluation, EvaluationStatus, RunStatus, TrainingRun

DEMO_BASE = "demo"


def run_queryset() -> QuerySet[TrainingRun]:
    return TrainingRun.objects.select_related("dataset_version__batch", "created_by", "evaluation").order_by("-id")


def run_get(*, run_id: int) -> TrainingRun | None:
    return run_queryset().filter(pk=run_id).first()


def run_active_for_version(*, version: DatasetVersion) -> TrainingRun | None:
    return TrainingRun.objects.filter(dataset_version=version, status__in=ACTIVE_RUN_STATUSES).first()


def run_dir_abspath(*, run: TrainingRun) -> Path:
    return Path(settings.ARTIFACT_ROOT) / (run.run_dir or f"runs/{run.pk}")


def base_checkpoint_abspath(*, base_checkpoint: str) -> Path:
    """The folder a run's base checkpoint names: "demo" is the bundled tiny model."""
    if base_checkpoint == DEMO_BASE:
        return Path(settings.DEMO_BASE_CHECKPOINT)
    return Path(base_checkpoint)


def run_metrics(*, run: TrainingRun) -> list[dict[str, Any]]:
    """The records of metrics.jsonl (half-written or garbled lines skipped)."""
    path = run_dir_abspath(run=run) / contract.METRICS
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


@dataclass(frozen=True)
class LossCurve:
    """An SVG polyline of train (and eval) loss against step, in a width x height box."""

    width: int
    height: int
    train_points: str
    eval_points: str
    max_step: int
    min_loss: float
    max_loss: float


def run_loss_curve(*, run: TrainingRun, width: int = 640, height: int = 200, pad: int = 8) -> LossCurve | None:
    records = run_metrics(run=run)
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train" and _finite(r.get("loss"))]
    evals = [(r["step"], r["eval_loss"]) for r in records if r.get("kind") == "eval" and _finite(r.get("eval_loss"))]
    if not train:
        return None
    max_step = max(run.total_steps, max(s for s, _ in train + evals), 1)
    losses = [loss for _, loss in train + evals]
    low, high = min(losses), max(losses)
    span = (high - low) or 1.0

    def points(series: list[tuple[int, float]]) -> str:
        x = [pad + (width - 2 * pad) * s / max_step for s, _ in series]
        y = [pad + (height - 2 * pad) * (high - v) / span for _, v in series]
        return " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y, strict=True))

    return LossCurve(width=width, height=height, train_points=points(train), eval_points=points(evals),
                     max_step=max_step, min_loss=low, max_loss=high)


def run_progress(*, run: TrainingRun) -> dict[str, Any]:
    """What the run page's poll reads: JSON primitives only. `watch`: something may still change."""
    evaluation = getattr(Evaluation.objects.filter(run=run).first(), "status", None)
    waiting = {EvaluationStatus.PENDING, EvaluationStatus.RUNNING}
    return {
        "id": run.pk,
        "status": run.status,
        "status_label": run.get_status_display(),
        "active": run.status in ACTIVE_RUN_STATUSES,
        "attempt": run.attempt,
        "step": run.step,
        "total_steps": run.total_steps,
        "percent": run_percent(run=run),
        "last_loss": run.last_loss,
        "eta_seconds": run.eta_seconds,
        "log_tail": run.log_tail,
        "error": run.error,
        "evaluation": evaluation,
        "watch": run.status in ACTIVE_RUN_STATUSES or evaluation in waiting,
    }


def run_percent(*, run: TrainingRun) -> int:
    if run.status == RunStatus.SUCCEEDED:
        return 100
    return int(100 * run.step / run.total_steps) if run.total_steps else 0


def evaluation_for_run(*, run: TrainingRun) -> Evaluation | None:
    return Evaluation.objects.select_related("override_by").filter(run=run).first()


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and value == value and abs(value) != float("inf")


def run_latest_for_version(*, version: DatasetVersion) -> TrainingRun | None:
    return TrainingRun.objects.filter(dataset_version=version).order_by("-id").first()
