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
from django.db import DatabaseError, transaction
from django.utils import timezone

from accounts.models import User
from cotrain_site.jobs import enqueue_on_commit
from curation import selectors as curation_selectors
from training.models import Evaluation, EvaluationStatus, RunStatus
from training.selectors import base_checkpoint_abspath, run_dir_abspath
from training.services.runs import EVALUATE_TASK, START_PERMISSION, ClaimLost, db_reconnect, db_retry
from training.services.transitions import evaluation_transition
from worker import launcher

OVERRIDE_PERMISSION = "training.override_evaluation"
MIN_REASON_CHARS = 10
# chrF is in points (0-100); differences below this are noise, as in trainer/evaluate.py.
CHRF_TIE = 1e-6


def evaluation_claim(*, run_id: int) -> Evaluation | None:
    """Take the evaluation of a succeeded run (creating it if needed); None when there is nothing to do."""
    with transaction.atomic():
        evaluation = Evaluation.objects.select_for_update().filter(run_id=run_id).first()
        if evaluation is None:
            from training.models import TrainingRun

            if not TrainingRun.objects.filter(pk=run_id, status=RunStatus.SUCCEEDED).exists():
                return None
            evaluation = Evaluation.objects.create(run_id=run_id)
        if evaluation.status != EvaluationStatus.PENDING:
            return None  # running elsewhere, or already decided; the sweeper requeues a stale one
        return evaluation_transition(evaluation=evaluation, to_status=EvaluationStatus.RUNNING)


def evaluation_requeue_stale(*, evaluation_id: int) -> bool:
    with transaction.atomic():
        evaluation = Evaluation.objects.select_for_update().get(pk=evaluation_id)
        limit = settings.RUN_HEARTBEAT_TIMEOUT_SECONDS
        if evaluation.status != EvaluationStatus.RUNNING or (
            evaluation.heartbeat_at and (timezone.now() - evaluation.heartbeat_at).total_seconds() <= limit
        ):
            return False
        evaluation_transition(evaluation=evaluation, to_status=EvaluationStatus.PENDING,
                              error="Its worker stopped; queued again.")
        enqueue_on_commit(EVALUATE_TASK, evaluation.run_id)
    return True


def evaluation_requeue_lost(*, evaluation_id: int) -> bool:
    """The sweeper's move for an evaluation `pending` past JOB_REQUEUE_SECONDS: its message was lost (True)."""
    with transaction.atomic():
        evaluation = Evaluation.objects.select_for_update().get(pk=evaluation_id)
        waited = (timezone.now() - evaluation.enqueued_at).total_seconds()
        if evaluation.status != EvaluationStatus.PENDING or waited <= settings.JOB_REQUEUE_SECONDS:
            return False
        evaluation.enqueued_at = timezone.now()
        evaluation.save(update_fields=["enqueued_at"])
        enqueue_on_commit(EVALUATE_TASK, evaluation.run_id)
    return True


def evaluation_retry(*, evaluation: Evaluation, by: User | AnonymousUser | None) -> Evaluation:
    """A maintainer's retry of a failed evaluation (a scoring crash, a full disk): scored again from scratch."""
    if by is None or not by.has_perm(START_PERMISSION):
        raise PermissionDenied("Only maintainers can retry evaluations.")
    with transaction.atomic():
        locked = Evaluation.objects.select_for_update().get(pk=evaluation.pk)
        if locked.status != EvaluationStatus.FAILED:
            raise ValidationError(f"The evaluation is {locked.get_status_display()}; only a failed one can be "
                                  "retried.", code="not_failed")
        retried = evaluation_transition(evaluation=locked, to_status=EvaluationStatus.PENDING,
                                        error=f"Retried by {by}; last error: {locked.error}"[:5000])
        enqueue_on_commit(EVALUATE_TASK, retried.run_id)
    return retried


def evaluation_execute(*, evaluation: Evaluation) -> Evaluation:
    """Score base and tuned on the cases and the general set, then record the verdict."""
    run = evaluation.run
    run_dir = run_dir_abspath(run=run)
    general = Path(settings.GENERAL_EVAL_PATH)
    sets = {
        "cases": (curation_selectors.dataset_version_abspath(version=run.dataset_version), "eval"),
        # A single JSONL file has one split, which the trainer calls "train".
        "general": (general, "train" if general.is_file() else "eval"),
    }
    comparisons: dict[str, dict[str, Any]] = {}
    for name, (data, split) in sets.items():
        out = run_dir / "eval" / name
        command = launcher.eval_command(base=base_checkpoint_abspath(base_checkpoint=run.base_checkpoint),
                                        model=run_dir / "export" / "merged", data=data, split=split, out=out,
                                        max_new_tokens=settings.EVAL_MAX_NEW_TOKENS, seq_len=settings.EVAL_SEQ_LEN)
        outcome = launcher.launch(command, run_dir=out, on_progress=lambda _: _heartbeat(evaluation),
                                  cwd=settings.REPO_ROOT, poll_seconds=2.0,
                                  lock_wait_seconds=settings.RUN_HEARTBEAT_TIMEOUT_SECONDS)
        try:
            comparisons[name] = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tail = launcher.log_tail(out / launcher.LOG_NAME, max_bytes=1500)
            error = f"Scoring the {name} set failed (exit {outcome.exit_code}):\n{tail}"
            return db_retry(partial(evaluation_fail, evaluation=evaluation, error=error),
                            what=f"evaluation {evaluation.pk}")
    return db_retry(lambda: evaluation_record(evaluation=evaluation, cases=comparisons["cases"],
                                              general=comparisons["general"]), what=f"evaluation {evaluation.pk}")


def _heartbeat(evaluation: Evaluation) -> None:
    try:
        updated = Evaluation.objects.filter(pk=evaluation.pk, attempt=evaluation.attempt,
                                            status=EvaluationStatus.RUNNING).update(heartbeat_at=timezone.now())
    except DatabaseError as exc:
        db_reconnect(what=f"evaluation {evaluation.pk} heartbeat", exc=exc)
        return
    if not updated:
        raise ClaimLost(f"evaluation {evaluation.pk}: attempt {evaluation.attempt} was taken over")


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
        locked = Evaluation.objects.select_for_update().get(pk=evaluation.pk)
        if locked.attempt != evaluation.attempt or locked.status != EvaluationStatus.RUNNING:
            raise ClaimLost(f"evaluation {evaluation.pk}: attempt {evaluation.attempt} was taken over")
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


def evaluation_fail(*, evaluation: Evaluation, error: str) -> Evaluation:
    return evaluation_transition(evaluation=evaluation, to_status=EvaluationStatus.FAILED, error=error)


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
