"""Celery tasks of the training loop. Each takes an id, claims its work, and is safe to run twice.

`train_*` and `evaluate_*` are routed to the `gpu` queue (worker/celery_app.py).
The work itself is in training.services; a task only claims and hands over.
"""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from training import selectors, services
from worker.launcher import FolderBusy

log = logging.getLogger(__name__)
# A database that is briefly unreachable before the claim is worth retrying; after
# the claim, a lost worker is the sweeper's business (the attempt resumes).
TRANSIENT = (OperationalError, InterfaceError)


@shared_task(bind=True, acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def train_run(self, run_id: int) -> str:
    run = services.run_claim(run_id=run_id, worker=self.request.hostname or "")
    if run is None:
        return "nothing to do"
    try:
        run = services.run_execute(run=run)
    except services.ClaimLost as exc:
        log.warning("%s; this worker stopped its trainer", exc)
        return "claim lost"
    except FolderBusy as exc:
        # Another trainer still writes the folder: this attempt's heartbeat stops, and the sweeper queues it again.
        log.warning("run %s: %s; left to the sweeper", run_id, exc)
        return "run folder busy"
    return run.status


@shared_task(bind=True, acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def evaluate_run(self, run_id: int) -> str:
    evaluation = services.evaluation_claim(run_id=run_id)
    if evaluation is None:
        return "nothing to do"
    try:
        evaluation = services.evaluation_execute(evaluation=evaluation)
    except services.ClaimLost as exc:
        log.warning("%s; this worker stopped", exc)
        return "claim lost"
    except FolderBusy as exc:
        log.warning("evaluation of run %s: %s; left to the sweeper", run_id, exc)
        return "folder busy"
    return evaluation.status


@shared_task(autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def sweep_stale() -> dict[str, int]:
    """Periodic (beat): queue again the runs and evaluations whose worker stopped sending heartbeats,
    and enqueue again those that waited past JOB_REQUEUE_SECONDS for a message that was lost."""
    runs = sum(services.run_requeue_stale(run_id=run_id) for run_id in selectors.run_ids_stale())
    evaluations = sum(services.evaluation_requeue_stale(evaluation_id=evaluation_id)
                      for evaluation_id in selectors.evaluation_ids_stale())
    lost_runs = sum(services.run_requeue_lost(run_id=run_id) for run_id in selectors.run_ids_waiting())
    lost_evaluations = sum(services.evaluation_requeue_lost(evaluation_id=evaluation_id)
                           for evaluation_id in selectors.evaluation_ids_waiting())
    return {"runs": runs, "evaluations": evaluations, "lost_runs": lost_runs, "lost_evaluations": lost_evaluations}
