"""Evaluations: base vs fine-tuned on the dataset's eval split and on the general regression set.

The `evaluate_run` task claims the run's evaluation, runs `python -m trainer eval`
twice (cases, general) through worker.launcher, and records the comparison with a
verdict: passed, or blocked when the requested cases did not improve or the general
set regressed beyond the configured limits. A maintainer may override a block with
a written reason.
"""

import json
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from trainer import contract

from accounts.models import User
from cotrain_site.jobs import Heartbeat, db_retry, job_claim, job_lock, job_retry, job_send
from curation import selectors as curation_selectors
from training.models import Evaluation, EvaluationStatus, RunStatus, TrainingRun
from training.selectors import base_checkpoint_abspath, run_dir_abspath
from training.services.runs import START_PERMISSION
from training.services.transitions import EVALUATION_JOB, evaluation_transition
from worker import launcher

OVERRIDE_PERMISSION = "training.override_evaluation"
MIN_REASON_CHARS = 10
# chrF is in points (0-100); differences below this are noise, as in trainer/evaluate.py.
CHRF_TIE = 1e-6


def evaluation_claim(*, run_id: int) -> Evaluation | None:
    """Take the evaluation of a succeeded run (creating it if needed); None when there is nothing to do."""
    evaluation = Evaluation.objects.filter(run_id=run_id).only("pk").first()
    if evaluation is None:
        if not TrainingRun.objects.filter(pk=run_id, status=RunStatus.SUCCEEDED).exists():
            return None
        evaluation, _ = Evaluation.objects.get_or_create(run_id=run_id)
    # Running elsewhere, or already decided: nothing to do (the sweeper queues a silent one again).
    return job_claim(EVALUATION_JOB, pk=evaluation.pk,
                     claim=lambda row: evaluation_transition(evaluation=row, to_status=EvaluationStatus.RUNNING))


def evaluation_on_stale(evaluation: Evaluation) -> bool:
    """The sweeper's move for an evaluation whose worker went silent: queued again."""
    job_send(EVALUATION_JOB, evaluation_transition(evaluation=evaluation, to_status=EvaluationStatus.PENDING,
                                                   error="Its worker stopped; queued again."))
    return True


def evaluation_retry(*, evaluation: Evaluation, by: User | AnonymousUser | None) -> Evaluation:
    """A maintainer's retry of a failed evaluation (a scoring crash, a full disk): scored again from scratch."""
    if by is None or not by.has_perm(START_PERMISSION):
        raise PermissionDenied("Only maintainers can retry evaluations.")
    return job_retry(EVALUATION_JOB, evaluation, failed=EvaluationStatus.FAILED, label="The evaluation",
                     noun="one", requeue=lambda locked, last_error: evaluation_transition(
                         evaluation=locked, to_status=EvaluationStatus.PENDING,
                         error=f"Retried by {by}; last error: {last_error}"))


def evaluation_execute(*, evaluation: Evaluation) -> Evaluation:
    """Score base and tuned on the cases and the general set, then record the verdict."""
    run = evaluation.run
    run_dir = run_dir_abspath(run=run)
    # Each set's eval split is scored.
    sets = {
        "cases": curation_selectors.dataset_version_abspath(version=run.dataset_version),
        "general": Path(settings.GENERAL_EVAL_PATH),
    }
    comparisons: dict[str, dict[str, Any]] = {}
    beat = Heartbeat(EVALUATION_JOB, pk=evaluation.pk, attempt=evaluation.attempt)
    for name, data in sets.items():
        out = run_dir / contract.EVALUATIONS / name
        command = launcher.eval_command(base=base_checkpoint_abspath(base_checkpoint=run.base_checkpoint),
                                        model=run_dir / contract.EXPORT / contract.EXPORT_MERGED, data=data,
                                        split="eval", out=out, max_new_tokens=settings.EVAL_MAX_NEW_TOKENS,
                                        seq_len=settings.EVAL_SEQ_LEN)
        outcome = launcher.launch(command, run_dir=out, on_progress=lambda _: beat(),
                                  cwd=settings.REPO_ROOT, poll_seconds=2.0,
                                  lock_wait_seconds=settings.RUN_HEARTBEAT_TIMEOUT_SECONDS)
        try:
            comparisons[name] = json.loads((out / contract.COMPARISON).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tail = launcher.log_tail(out / contract.TRAINER_LOG, max_bytes=1500)
            error = f"Scoring the {name} set failed (exit {outcome.exit_code}):\n{tail}"
            return db_retry(partial(evaluation_fail, evaluation=evaluation, error=error),
                            what=f"evaluation {evaluation.pk}")
    return db_retry(lambda: evaluation_record(evaluation=evaluation, cases=comparisons["cases"],
                                              general=comparisons["general"]), what=f"evaluation {evaluation.pk}")


def evaluation_verdict(*, cases: dict[str, Any], general: dict[str, Any]) -> tuple[bool, list[str]]:
    """(passes, reasons) from the two comparison summaries (trainer/evaluate.py `compare`)."""
    base, tuned = cases["base"], cases["tuned"]
    better = []
    if _gt(tuned.get("chrf"), base.get("chrf"), CHRF_TIE):
        better.append(f"chrF {base['chrf']:.2f} -> {tuned['chrf']:.2f}")
    if _gt(tuned.get("exact_match"), base.get("exact_match"), 0.0):
        better.append(f"exact match {base['exact_match']:.3f} -> {tuned['exact_match']:.3f}")
    if _gt(base.get("loss"), tuned.get("loss"), 0.0):
        better.append(f"loss {base['loss']:.4f} -> {tuned['loss']:.4f}")
    reasons = [f"Requested cases improved: {', '.join(better)}." if better
               else "Blocked: the requested cases did not improve "
                    "(chrF, exact match and loss are no better than the base)."]
    passes = bool(better)
    g_base, g_tuned = general["base"], general["tuned"]
    chrf_drop = (g_base.get("chrf") or 0.0) - (g_tuned.get("chrf") or 0.0)
    if chrf_drop > settings.EVAL_GENERAL_MAX_CHRF_DROP:
        passes = False
        reasons.append(f"Blocked: general set chrF fell by {chrf_drop:.2f} points "
                       f"(limit {settings.EVAL_GENERAL_MAX_CHRF_DROP:g}).")
    if g_base.get("loss") is not None and g_tuned.get("loss") is not None:
        rise = (g_tuned["loss"] - g_base["loss"]) / max(abs(g_base["loss"]), 1e-9)
        if rise > settings.EVAL_GENERAL_MAX_LOSS_INCREASE:
            passes = False
            reasons.append(f"Blocked: general set loss rose by {100 * rise:.1f}% "
                           f"(limit {100 * settings.EVAL_GENERAL_MAX_LOSS_INCREASE:g}%).")
    if passes:
        reasons.append("General set within the regression limits.")
    return passes, reasons


def _gt(a: float | None, b: float | None, margin: float) -> bool:
    return a is not None and b is not None and a > b + margin


def evaluation_record(*, evaluation: Evaluation, cases: dict[str, Any], general: dict[str, Any]) -> Evaluation:
    """Store both comparisons and move to passed or blocked (fenced by the attempt)."""
    passes, reasons = evaluation_verdict(cases=cases["summary"], general=general["summary"])
    counts = ("n", "improved", "regressed", "unchanged")
    with transaction.atomic():
        locked = job_lock(EVALUATION_JOB, pk=evaluation.pk, attempt=evaluation.attempt)
        locked.base_metrics = {"cases": cases["summary"]["base"], "general": general["summary"]["base"]}
        locked.tuned_metrics = {
            "cases": cases["summary"]["tuned"], "general": general["summary"]["tuned"],
            "cases_counts": {k: cases["summary"].get(k) for k in counts},
            "general_counts": {k: general["summary"].get(k) for k in counts},
        }
        locked.per_case = cases["examples"]
        locked.verdict = "\n".join(reasons)
        locked.save(update_fields=["base_metrics", "tuned_metrics", "per_case", "verdict"])
        return evaluation_transition(evaluation=locked,
                                     to_status=EvaluationStatus.PASSED if passes else EvaluationStatus.BLOCKED)


@transaction.atomic
def evaluation_fail(*, evaluation: Evaluation, error: str) -> Evaluation:
    """Record this attempt's failure (fenced: an attempt that was taken over records nothing)."""
    locked = job_lock(EVALUATION_JOB, pk=evaluation.pk, attempt=evaluation.attempt)
    return evaluation_transition(evaluation=locked, to_status=EvaluationStatus.FAILED, error=error)


def evaluation_override(*, evaluation: Evaluation, by: User | AnonymousUser | None, reason: str) -> Evaluation:
    """Let a blocked run be published anyway; needs the override permission and a written reason."""
    if by is None or not by.has_perm(OVERRIDE_PERMISSION):
        raise PermissionDenied("Only maintainers with the override permission can override an evaluation.")
    reason = reason.strip()
    if len(reason) < MIN_REASON_CHARS:
        raise ValidationError({"reason": f"Write why this release should go out anyway (at least {MIN_REASON_CHARS} "
                                         "characters); it is shown on the run page and the model card."})
    with transaction.atomic():
        locked = evaluation_transition(evaluation=evaluation, to_status=EvaluationStatus.OVERRIDDEN)
        locked.override_by, locked.override_reason = by, reason
        locked.save(update_fields=["override_by", "override_reason"])
    return locked
