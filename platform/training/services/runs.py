"""Training runs: start, cancel, and what the `train_run` task does with a claimed run.

A run's life on a worker: claim (a guarded transition, attempt += 1) -> verify the
dataset hash -> write the run folder -> launch the trainer (worker.launcher) while
streaming metrics.jsonl into the row -> record result.json. Every write after the
claim is fenced by the attempt number, so a worker that lost its claim (its
heartbeat went stale and another attempt took over) can record nothing and stops
its trainer; and the launcher holds an exclusive lock on the run folder while its
trainer lives, so a second attempt waits for the first trainer to be gone.

A database restart mid-run breaks the worker's connection, and Django would keep
failing on the dead socket for the rest of the task: every write here closes a
broken connection (the next query reconnects) and tries again at the next poll,
so the trainer never stops for a blip shorter than the heartbeat timeout.
"""

import json
import logging
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from trainer import contract

from accounts.models import User
from cotrain_site.jobs import ClaimLost, Heartbeat, db_reconnect, db_retry, job_claim, job_lock, job_retry, job_send
from curation import selectors as curation_selectors
from curation import services as curation_services
from curation.models import DatasetVersion, DatasetVersionStatus
from training.models import Evaluation, RunStatus, TrainingRun
from training.recipes import Recipe, recipe_from_json, recipe_validate, run_config_build
from training.selectors import DEMO_BASE, base_checkpoint_abspath, run_active_for_version, run_dir_abspath
from training.services.transitions import EVALUATION_JOB, RUN_JOB, run_transition
from worker import launcher

START_PERMISSION = "training.add_trainingrun"
CANCEL_PERMISSION = "training.change_trainingrun"
LOG_TAIL_BYTES = 4000
log = logging.getLogger(__name__)
__all__ = ["ClaimLost", "db_reconnect", "db_retry"]  # training.services exports them for its task and tests


def _require(user: User | AnonymousUser | None, permission: str, action: str) -> None:
    if user is None or not user.has_perm(permission):
        raise PermissionDenied(f"Only maintainers can {action}.")


def base_checkpoint_validate(*, base_checkpoint: str) -> None:
    """A base is "demo" or an absolute folder in the HF Yuan2 layout (config.json at least)."""
    if base_checkpoint != DEMO_BASE and not Path(base_checkpoint).is_absolute():
        raise ValidationError({"base_checkpoint": 'Give an absolute folder path, or "demo" for the bundled model.'})
    path = base_checkpoint_abspath(base_checkpoint=base_checkpoint)
    if not (path / "config.json").is_file():
        hint = " Build it with `python -m trainer demo-base --out PATH`." if base_checkpoint == DEMO_BASE else ""
        raise ValidationError({"base_checkpoint": f"{path} is not a checkpoint folder (no config.json).{hint}"})


def run_start(*, version: DatasetVersion, base_checkpoint: str, recipe: Recipe | dict[str, Any],
              by: User | None) -> TrainingRun:
    """Queue a run of `recipe` on a ready dataset version; refuse a second active run on its batch."""
    _require(by, START_PERMISSION, "start training runs")
    recipe = recipe if isinstance(recipe, Recipe) else recipe_from_json(recipe)
    recipe_validate(recipe=recipe)
    base_checkpoint_validate(base_checkpoint=base_checkpoint.strip())
    if version.status != DatasetVersionStatus.READY:
        raise ValidationError(f"Dataset version {version.pk} is {version.status}, not ready; it cannot be trained on.")
    try:
        with transaction.atomic():
            # The lock serialises two start requests for one version; the partial
            # unique constraint is the last word if anything else slips past.
            DatasetVersion.objects.select_for_update().get(pk=version.pk)
            _refuse_if_active(version=version)
            run = TrainingRun.objects.create(dataset_version=version, base_checkpoint=base_checkpoint.strip(),
                                             method=recipe.method, recipe=recipe.as_json(),
                                             total_steps=recipe.max_steps, created_by=by)
            run.run_dir = f"runs/{run.pk}"
            run.save(update_fields=["run_dir"])
            job_send(RUN_JOB, run)
    except IntegrityError:
        _refuse_if_active(version=version)
        raise
    return run


def _refuse_if_active(*, version: DatasetVersion) -> None:
    active = run_active_for_version(version=version)
    if active is not None:
        raise ValidationError(
            f"Batch {version.batch} already has run #{active.pk} ({active.status}); "
            "cancel it or wait until it finishes before starting another.",
            code="run_active",
        )


def run_cancel(*, run: TrainingRun, by: User | None) -> TrainingRun:
    """A queued run is cancelled at once; a running one is asked to stop (its worker SIGTERMs the trainer)."""
    _require(by, CANCEL_PERMISSION, "cancel training runs")
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if locked.status == RunStatus.QUEUED:
            return run_transition(run=locked, to_status=RunStatus.CANCELLED, error=f"Cancelled by {by}.")
        if locked.status == RunStatus.RUNNING:
            return run_transition(run=locked, to_status=RunStatus.CANCELLING)
        raise ValidationError(f"Run {locked.pk} is {locked.get_status_display()}; there is nothing to cancel.")


# -- the worker side -------------------------------------------------------------


def run_claim(*, run_id: int, worker: str) -> TrainingRun | None:
    """Take the run for this worker, or None when there is nothing to do (finished, or claimed by a live worker).

    Safe to call twice for one message: a redelivered or duplicated task finds the
    run running with a fresh heartbeat and leaves it alone.
    """
    def claim(run: TrainingRun) -> TrainingRun:
        run = run_transition(run=run, to_status=RunStatus.RUNNING)
        run.worker_hostname = worker
        run.save(update_fields=["worker_hostname"])
        return run

    return job_claim(RUN_JOB, pk=run_id, claim=claim)


def run_on_stale(run: TrainingRun) -> bool:
    """The sweeper's move for a run whose worker went silent: queue it again (True) or close a stale cancel."""
    if run.status == RunStatus.CANCELLING:
        run_transition(run=run, to_status=RunStatus.CANCELLED, error="Cancelled; its worker had stopped.")
        return False
    queued = run_transition(run=run, to_status=RunStatus.QUEUED, error="Its worker stopped; queued to resume.")
    job_send(RUN_JOB, queued)
    return True


def run_retry(*, run: TrainingRun, by: User | None) -> TrainingRun:
    """A maintainer's retry of a failed run: queued again on its run folder, so it resumes its newest checkpoint."""
    _require(by, START_PERMISSION, "retry training runs")

    def requeue(locked: TrainingRun, last_error: str) -> TrainingRun:
        _refuse_if_active(version=locked.dataset_version)
        return run_transition(run=locked, to_status=RunStatus.QUEUED,
                              error=f"Retried by {by}; last error: {last_error}")

    try:
        return job_retry(RUN_JOB, run, failed=RunStatus.FAILED, requeue=requeue, label=f"Run {run.pk}", noun="run")
    except IntegrityError:
        # Another run on the batch started between the check and the save.
        _refuse_if_active(version=run.dataset_version)
        raise


def run_execute(*, run: TrainingRun) -> TrainingRun:
    """Everything after the claim: verify, write the folder, train, record. Returns the finished run."""
    run_dir = run_dir_abspath(run=run)
    version = run.dataset_version
    try:
        curation_services.dataset_version_verify(version=version)
        config = run_folder_write(run=run, run_dir=run_dir)
    except curation_services.DatasetTampered as exc:
        return run_finish(run=run, status=RunStatus.FAILED, result={},
                          error=f"Dataset version {version.pk} no longer matches its content hash, "
                                f"so the trainer was not launched: {exc}")
    except (OSError, ValueError, ValidationError) as exc:
        # Not transient: a retry would fail the same way, so fail the run with the reason.
        return run_finish(run=run, status=RunStatus.FAILED, result={},
                          error=f"Could not prepare the run folder: {type(exc).__name__}: {exc}")
    command = launcher.train_command(config=config, run_dir=run_dir, gpus=launcher.gpu_count())
    watcher = _RunWatcher(run=run, run_dir=run_dir)
    # Waiting for the folder's lock (a previous attempt's trainer is still stopping) heartbeats as it waits.
    outcome = launcher.launch(command, run_dir=run_dir, on_progress=watcher.progress,
                              should_cancel=watcher.cancel_requested, cwd=settings.REPO_ROOT,
                              env={"PYTHONUNBUFFERED": "1"}, lock_wait_seconds=settings.RUN_HEARTBEAT_TIMEOUT_SECONDS)
    watcher.write(force=True)
    return db_retry(lambda: run_record_outcome(run=run, outcome=outcome, run_dir=run_dir),
                    what=f"run {run.pk} attempt {run.attempt}")


def run_folder_write(*, run: TrainingRun, run_dir: Path) -> Path:
    """Write the run's inputs (trainer.contract): the trainer's run config (absolute paths) and platform.json.

    Returns the run config's path. Rewritten identically by every attempt, so a
    relaunch resumes the same recipe; the trainer writes only its own outputs.
    """
    version = run.dataset_version
    dataset_path = curation_selectors.dataset_version_abspath(version=version)
    base = base_checkpoint_abspath(base_checkpoint=run.base_checkpoint)
    recipe = recipe_from_json(run.recipe)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_config_build(recipe=recipe, base_checkpoint=base, dataset_path=dataset_path, run_dir=run_dir)
    config_path = run_dir / contract.RUN_CONFIG
    config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    platform = {
        "run_id": run.pk,
        "attempt": run.attempt,
        "dataset": {"version_id": version.pk, "batch": str(version.batch), "path": str(dataset_path),
                    "content_hash": version.content_hash},
        "base_checkpoint": {"name": run.base_checkpoint, "path": str(base)},
        "recipe": run.recipe,
    }
    (run_dir / contract.PLATFORM_RECORD).write_text(json.dumps(platform, indent=2, ensure_ascii=False) + "\n",
                                                    encoding="utf-8")
    return config_path


class _RunWatcher:
    """The launcher's callbacks: throttled progress writes (the heartbeat) and the cancel poll."""

    def __init__(self, *, run: TrainingRun, run_dir: Path) -> None:
        self.run, self.run_dir = run, run_dir
        self.beat = Heartbeat(RUN_JOB, pk=run.pk, attempt=run.attempt, every_s=settings.RUN_PROGRESS_SECONDS)
        self.latest: dict[str, Any] = {}

    def progress(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            if record.get("kind") == "train":
                self.latest = record
        self.write()

    def write(self, force: bool = False) -> None:
        """The heartbeat, carrying the newest step and the log's tail; fenced (`ClaimLost` once taken over)."""
        if not (force or self.beat.due()):
            return  # reading the log's tail is the expensive part: not on every poll
        fields: dict[str, Any] = {"log_tail": launcher.log_tail(self.run_dir / contract.TRAINER_LOG,
                                                                max_bytes=LOG_TAIL_BYTES)}
        if self.latest:
            fields.update(step=self.latest.get("step", 0), total_steps=self.latest.get("total_steps", 0),
                          last_loss=self.latest.get("loss"), eta_seconds=int(self.latest.get("eta_s") or 0))
        self.beat(force=True, **fields)

    def cancel_requested(self) -> bool:
        try:
            status = TrainingRun.objects.filter(pk=self.run.pk).values_list("status", flat=True).first()
        except DatabaseError as exc:
            db_reconnect(what=f"run {self.run.pk} cancel poll", exc=exc)
            return False
        return status == RunStatus.CANCELLING


def run_record_outcome(*, run: TrainingRun, outcome: launcher.LaunchResult, run_dir: Path) -> TrainingRun:
    result = outcome.result or {}
    tail = launcher.log_tail(run_dir / contract.TRAINER_LOG, max_bytes=LOG_TAIL_BYTES)
    if outcome.exit_code == contract.Exit.SUCCEEDED and result.get("status") == contract.Status.SUCCEEDED:
        return run_finish(run=run, status=RunStatus.SUCCEEDED, result=result, log_tail=tail)
    if outcome.cancelled or result.get("status") == contract.Status.CANCELLED:
        return run_finish(run=run, status=RunStatus.CANCELLED, result=result, log_tail=tail,
                          error="Cancelled; the trainer stopped after its current step.")
    reason = result.get("error") or f"the trainer exited with status {outcome.exit_code} and wrote no result"
    if outcome.exit_code == contract.Exit.USAGE:
        reason = f"the trainer refused the run config: {reason}"
    return run_finish(run=run, status=RunStatus.FAILED, result=result, log_tail=tail,
                      error=f"Training failed: {reason}")


def run_finish(*, run: TrainingRun, status: str, result: dict[str, Any], error: str = "",
               log_tail: str | None = None) -> TrainingRun:
    """Record the end of this attempt (fenced by its attempt number); a success queues the evaluation."""
    with transaction.atomic():
        locked = job_lock(RUN_JOB, pk=run.pk, attempt=run.attempt)
        if status == RunStatus.CANCELLED and locked.status == RunStatus.CANCELLING:
            error = error or "Cancelled."
        locked = run_transition(run=locked, to_status=status, error=error)
        locked.result = {k: v for k, v in result.items() if k != "traceback"}
        fields = ["result", "heartbeat_at"]
        locked.heartbeat_at = timezone.now()
        if log_tail is not None:
            locked.log_tail = log_tail
            fields.append("log_tail")
        if status == RunStatus.SUCCEEDED:
            locked.step = locked.total_steps = int(result.get("steps") or locked.total_steps)
            locked.eta_seconds = 0
            locked.last_loss = result.get("final_loss", locked.last_loss)
            fields += ["step", "total_steps", "eta_seconds", "last_loss"]
        locked.save(update_fields=fields)
        if status == RunStatus.SUCCEEDED:
            evaluation, _ = Evaluation.objects.get_or_create(run=locked)
            job_send(EVALUATION_JOB, evaluation)
    return locked
