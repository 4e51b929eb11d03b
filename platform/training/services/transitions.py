"""The one transition function per model: every status change of runs and evaluations."""

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cotrain_site.jobs import Job
from cotrain_site.transitions import lock_for_transition
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


@transaction.atomic
def run_transition(*, run: TrainingRun, to_status: str, error: str = "") -> TrainingRun:
    locked = lock_for_transition(TrainingRun, pk=run.pk, to_status=to_status, allowed=RUN_TRANSITIONS,
                                 label="Run {row.pk}")
    now = timezone.now()
    locked.status, locked.error = to_status, error
    fields = ["status", "error"]
    if to_status == R.RUNNING:
        # The attempt number fences writes: a worker that lost its claim can no longer record progress.
        locked.attempt += 1
        locked.started_at = locked.started_at or now
        locked.heartbeat_at = now
        fields += ["attempt", "started_at", "heartbeat_at"]
    if to_status == R.QUEUED:
        # The caller sends it (`job_send`, which stamps when).
        locked.finished_at = None
        fields.append("finished_at")
    if to_status in FINISHED:
        locked.finished_at = now
        fields.append("finished_at")
    locked.save(update_fields=fields)
    return locked


@transaction.atomic
def evaluation_transition(*, evaluation: Evaluation, to_status: str, error: str = "") -> Evaluation:
    locked = lock_for_transition(Evaluation, pk=evaluation.pk, to_status=to_status, allowed=EVALUATION_TRANSITIONS,
                                 label="Evaluation {row.pk}")
    locked.status, locked.error = to_status, error
    fields = ["status", "error"]
    if to_status == E.RUNNING:
        locked.attempt += 1
        locked.started_at = locked.heartbeat_at = timezone.now()
        fields += ["attempt", "started_at", "heartbeat_at"]
    if to_status == E.PENDING:
        locked.finished_at = None
        fields.append("finished_at")
    if to_status in {E.PASSED, E.BLOCKED, E.FAILED}:
        locked.finished_at = timezone.now()
        fields.append("finished_at")
    locked.save(update_fields=fields)
    return locked
