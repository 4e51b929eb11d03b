"""Celery tasks of the training loop. Each takes an id, claims its work, and is safe to run twice.

`train_*` and `evaluate_*` are routed to the `gpu` queue (worker/celery_app.py).
The work itself is in training.services; a task only claims and hands over.
"""

import logging
from collections.abc import Callable
from typing import TypeVar

from celery import shared_task
from django.db import InterfaceError, OperationalError

from cotrain_site.jobs import job_sweep
from training import services
from training.models import Evaluation, TrainingRun
from worker.launcher import FolderBusy

log = logging.getLogger(__name__)
Work = TypeVar("Work", TrainingRun, Evaluation)
# A database that is briefly unreachable before the claim is worth retrying; after
# the claim, a lost worker is the sweeper's business (the attempt resumes).
TRANSIENT = (OperationalError, InterfaceError)


def _claimed_work(what: str, claimed: Work | None, execute: Callable[[Work], Work]) -> str:
    """Run `execute` on a claimed run or evaluation; the outcome's status, or why this worker did nothing."""
    if claimed is None:
        return "nothing to do"
    try:
        return execute(claimed).status
    except services.ClaimLost as exc:
        log.warning("%s: %s; this worker stopped", what, exc)
        return "claim lost"
    except FolderBusy as exc:
        # Another trainer still writes the folder: this attempt's heartbeat stops, and the sweeper queues it again.
        log.warning("%s: %s; left to the sweeper", what, exc)
        return "folder busy"


@shared_task(bind=True, acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def train_run(self, run_id: int) -> str:
    run = services.run_claim(run_id=run_id, worker=self.request.hostname or "")
    return _claimed_work(f"run {run_id}", run, lambda work: services.run_execute(run=work))


@shared_task(bind=True, acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def evaluate_run(self, run_id: int) -> str:
    evaluation = services.evaluation_claim(run_id=run_id)
    return _claimed_work(f"evaluation of run {run_id}", evaluation,
                         lambda work: services.evaluation_execute(evaluation=work))


@shared_task(autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def sweep_stale() -> dict[str, int]:
    """Periodic (beat): queue again the runs and evaluations whose worker stopped sending heartbeats,
    and enqueue again those that waited past JOB_REQUEUE_SECONDS for a message that was lost."""
    runs, lost_runs = job_sweep(services.RUN_JOB, on_stale=services.run_on_stale)
    evaluations, lost_evaluations = job_sweep(services.EVALUATION_JOB, on_stale=services.evaluation_on_stale)
    return {"runs": sum(runs), "evaluations": sum(evaluations), "lost_runs": sum(lost_runs),
            "lost_evaluations": sum(lost_evaluations)}
