"""The one transition function per model: every status change of runs and evaluations."""

from typing import Any

from django.db.models import Q
from django.utils import timezone

from cotrain_site.jobs import Job
from cotrain_site.transitions import transition
from training.models import Evaluation, EvaluationStatus, RunStatus, TrainingRun

R = RunStatus
RUN_TRANSITIONS = {
    (R.QUEUED, R.RUNNING),
    # A worker that died mid-run leaves `running`; the retried task claims it again.
    (R.RUNNING, R.RUNNING),
    # ... or the sweeper puts it back in the queue for the next attempt.
    (R.RUNNING, R.QUEUED),
    (R.RUNNING, R.SUCCEEDED),
    (R.RUNNING, R.FAILED),
    # The trainer stopped on a SIGTERM that did not come from a cancel (a host shutting down).
    (R.RUNNING, R.CANCELLED),
    (R.QUEUED, R.CANCELLED),
    (R.RUNNING, R.CANCELLING),
    (R.CANCELLING, R.CANCELLED),
    # The trainer finished (or failed) before it saw the cancel: record what happened.
    (R.CANCELLING, R.SUCCEEDED),
    (R.CANCELLING, R.FAILED),
    (R.QUEUED, R.FAILED),
    # A maintainer's retry: queued again on the same run folder, so the trainer resumes its newest checkpoint.
    (R.FAILED, R.QUEUED),
}
FINISHED = {R.SUCCEEDED, R.FAILED, R.CANCELLED}
# A message may take over a run whose worker went silent: the relaunch resumes its newest checkpoint.
RUN_JOB = Job(TrainingRun, "training.tasks.train_run", waiting=Q(status=R.QUEUED),
              working=Q(status__in=[R.RUNNING, R.CANCELLING]), timeout_setting="RUN_HEARTBEAT_TIMEOUT_SECONDS",
              claim_stale=True)
E = EvaluationStatus
EVALUATION_TRANSITIONS = {
    (E.PENDING, E.RUNNING),
    (E.RUNNING, E.RUNNING),
    # A stale evaluation (its worker died) or a failed one is queued again.
    (E.RUNNING, E.PENDING),
    (E.FAILED, E.PENDING),
    (E.RUNNING, E.PASSED),
    (E.RUNNING, E.BLOCKED),
    (E.RUNNING, E.FAILED),
    (E.BLOCKED, E.OVERRIDDEN),
}
# The task takes the run's id: a run has one evaluation, created by whichever comes first.
EVALUATION_JOB = Job(Evaluation, "training.tasks.evaluate_run", waiting=Q(status=E.PENDING),
                     working=Q(status=E.RUNNING), timeout_setting="RUN_HEARTBEAT_TIMEOUT_SECONDS",
                     args=lambda evaluation: (evaluation.run_id,))


def run_transition(*, run: TrainingRun, to_status: str, error: str = "") -> TrainingRun:
    def changes(locked: TrainingRun) -> dict[str, Any]:
        now = timezone.now()
        values: dict[str, Any] = {"error": error}
        if to_status == R.RUNNING:
            values |= RUN_JOB.claimed(locked) | {"started_at": locked.started_at or now}
        if to_status == R.QUEUED:
            values["finished_at"] = None  # the caller sends it (`job_send`, which stamps when)
        if to_status in FINISHED:
            values["finished_at"] = now
        return values

    return transition(TrainingRun, pk=run.pk, to_status=to_status, allowed=RUN_TRANSITIONS, label="Run {row.pk}",
                      changes=changes)


def evaluation_transition(*, evaluation: Evaluation, to_status: str, error: str = "") -> Evaluation:
    def changes(locked: Evaluation) -> dict[str, Any]:
        values: dict[str, Any] = {"error": error}
        if to_status == E.RUNNING:
            values |= EVALUATION_JOB.claimed(locked) | {"started_at": timezone.now()}
        if to_status == E.PENDING:
            values["finished_at"] = None
        if to_status in {E.PASSED, E.BLOCKED, E.FAILED}:
            values["finished_at"] = timezone.now()
        return values

    return transition(Evaluation, pk=evaluation.pk, to_status=to_status, allowed=EVALUATION_TRANSITIONS,
                      label="Evaluation {row.pk}", changes=changes)
