"""The main job on the embedded default: the whole co-training loop, then the web app.

migrate -> demo maintainer -> bundled cases (the demo maintainer accepts the new
ones) -> the tiny demo base model (built once) -> a real Celery worker subprocess
-> batch, approved -> dataset version -> training run, with progress -> evaluation
-> release -> runserver until Ctrl-C (or exit with --no-serve). The worker stops
when the command does.

Every step goes through the services, as a maintainer's clicks would; the command
only waits for the worker and prints. A second start trains on the cases accepted
since (none: it shows the last release), and finishes a batch that an interrupted
start left unreleased.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import transaction
from django.urls import reverse

from accounts.models import User
from accounts.services import maintainer_ensure
from curation.models import DatasetBatch, DatasetVersion, DatasetVersionStatus
from curation.selectors import batch_items, batch_latest_approved, batch_queryset, case_queryset_batchable
from curation.services import batch_approve, batch_create
from intake.importing import cases_import_records
from intake.models import CaseStatus, FeedbackCase
from intake.services import cases_bulk_transition
from releases.models import Release, ReleaseStatus
from releases.selectors import release_abspath, release_files, release_for_run, release_published_for_batch
from releases.services import release_publish
from training.models import Evaluation, EvaluationStatus, RunStatus, TrainingRun
from training.recipes import DEMO_RECIPE
from training.selectors import DEMO_BASE, run_latest_for_version
from training.services import run_start
from worker.embedded import EmbeddedWorker

SAMPLE_CASES = Path(settings.PLATFORM_DIR) / "intake" / "fixtures" / "sample_cases.jsonl"
OVERRIDE_REASON = (
    "Published by manage.py demo, which releases what its tiny CPU run produces so that the whole "
    "loop can be followed; the evaluation's verdict stays on the run page and in the model card."
)
# Generous limits for 2 slow cores; each wait also ends when the worker dies.
TIMEOUTS = {"dataset": 300, "run": 1800, "evaluation": 900}
POLL_SECONDS = 0.5


class Command(BaseCommand):
    help = "Run the co-training loop once on the bundled cases (train, evaluate, release), then serve the web app."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default=os.environ.get("COTRAIN_DEMO_ADDRPORT", "127.0.0.1:8000"))
        parser.add_argument("--no-serve", action="store_true", help="exit after publishing, printing the release")
        parser.add_argument("--username", default="maintainer")

    def handle(self, *args: Any, addrport: str, no_serve: bool, username: str, **options: Any) -> None:
        self.url = f"http://{addrport if ':' in addrport else '127.0.0.1:' + addrport}/"
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write(f"database: {settings.DATABASES['default']['NAME']} (migrated)")
        # A fresh password each start, unless one is given: a demo left running on a
        # shared machine should not keep a guessable maintainer login.
        password = os.environ.get("COTRAIN_DEMO_PASSWORD") or secrets.token_urlsafe(12)
        maintainer = maintainer_ensure(username=username, password=password)
        self._load_cases(maintainer=maintainer)

        batch = self._batch_to_train(maintainer=maintainer)
        # SIGTERM (a `kill`, a closing terminal, a test's timeout) unwinds like Ctrl-C,
        # through the `finally` that stops the worker; otherwise it would outlive us.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        worker = None
        try:
            if batch is not None or not no_serve:
                self._build_base_model()
                worker = self._start_worker()
            release = self._run_loop(batch=batch, maintainer=maintainer, worker=worker) if batch else None
            release = release or self._latest_release()
            self._print_ready(release=release, username=username, password=password)
            if no_serve:
                return
            # The worker keeps running: batches approved and runs started in the web app train too.
            call_command("runserver", addrport, use_reloader=False)
        finally:
            if worker is not None:
                worker.stop()

    # -- cases -------------------------------------------------------------------

    def _load_cases(self, *, maintainer: User) -> None:
        lines = SAMPLE_CASES.read_text(encoding="utf-8").splitlines()
        records = [(number, json.loads(text)) for number, text in enumerate(lines, start=1) if text.strip()]
        result = cases_import_records(records=records)
        self.stdout.write(f"sample cases: {result.created} loaded, {result.skipped} already present")
        # The maintainer's triage of the bundled requests still waiting for it: accept them all.
        uids = [record["uid"] for _, record in records]
        waiting = list(FeedbackCase.objects.filter(uid__in=uids, status=CaseStatus.NEW).values_list("pk", flat=True))
        if waiting:
            cases_bulk_transition(case_ids=waiting, to_status=CaseStatus.ACCEPTED, actor=maintainer,
                                  note="Accepted by the demo maintainer (manage.py demo).")
        self.stdout.write(f"triage: {len(waiting)} new sample cases accepted by {maintainer.username}")

    def _batch_to_train(self, *, maintainer: User) -> DatasetBatch | None:
        """The latest approved batch if it is not released yet (an interrupted start), else a new one."""
        latest = batch_latest_approved()
        if latest is not None and release_published_for_batch(batch=latest) is None:
            self.stdout.write(f"batch {latest.name}: approved earlier and not released yet; continuing it")
            return latest
        if not case_queryset_batchable().exists():
            self.stdout.write("batch: no accepted cases since the last batch; nothing new to train")
            return None
        number = batch_queryset().filter(name__startswith="demo-").count() + 1
        with transaction.atomic():
            batch = batch_create(by=maintainer, name=f"demo-{number}", notes="Created and approved by manage.py demo.")
            batch = batch_approve(batch=batch, by=maintainer)
        items = list(batch_items(batch=batch))
        scenarios = Counter(item.case.scenario for item in items)
        self.stdout.write(f"batch {batch.name}: {len(items)} cases in {len(scenarios)} scenarios, approved "
                          f"by {maintainer.username}")
        return batch

    # -- processes -----------------------------------------------------------------

    def _build_base_model(self) -> None:
        path = Path(settings.DEMO_BASE_CHECKPOINT)
        if (path / "SHA256SUMS").is_file():
            self.stdout.write(f"base model: {path} (built earlier)")
            return
        self.stdout.write(f"base model: pretraining the tiny LFA model on the bundled text into {path} (once)")
        self.stdout.flush()
        started = time.monotonic()
        command = [sys.executable, "-m", "trainer", "demo-base", "--out", str(path)]
        done = subprocess.run(command, cwd=settings.REPO_ROOT, check=False, stdout=subprocess.DEVNULL)
        if done.returncode != 0:
            raise CommandError(f"Building the demo base model failed (exit {done.returncode}): {' '.join(command)}")
        self.stdout.write(f"base model: built in {time.monotonic() - started:.0f} s")

    def _start_worker(self) -> EmbeddedWorker:
        worker = EmbeddedWorker(var_dir=settings.VAR_DIR, name="demo").start()
        if not worker.wait_ready(timeout=120):
            tail = worker.log_tail()
            worker.stop()
            raise CommandError(f"The Celery worker did not start; its log ({worker.log}) ends with:\n{tail}")
        self.stdout.write(f"worker: Celery worker pid {worker.pid} on queues default and gpu (log {worker.log})")
        return worker

    def _wait(self, what: str, done: Callable[[], bool], worker: EmbeddedWorker | None,
              tick: Callable[[], None] | None = None) -> None:
        deadline = time.monotonic() + TIMEOUTS[what]
        while not done():
            if worker is not None and not worker.alive():
                raise CommandError(f"The Celery worker stopped while waiting for the {what}; its log "
                                   f"({worker.log}) ends with:\n{worker.log_tail()}")
            if time.monotonic() > deadline:
                raise CommandError(f"Gave up waiting for the {what} after {TIMEOUTS[what]} s; see {worker.log}.")
            if tick is not None:
                tick()
            time.sleep(POLL_SECONDS)

    # -- the loop --------------------------------------------------------------------

    def _run_loop(self, *, batch: DatasetBatch, maintainer: User, worker: EmbeddedWorker) -> Release:
        version = self._wait_dataset(batch=batch, worker=worker)
        run = self._train(version=version, maintainer=maintainer, worker=worker)
        evaluation = self._evaluate(run=run, worker=worker)
        return self._publish(run=run, evaluation=evaluation, maintainer=maintainer)

    def _wait_dataset(self, *, batch: DatasetBatch, worker: EmbeddedWorker) -> DatasetVersion:
        self.stdout.write("dataset: the worker builds the dataset version ...")
        self.stdout.flush()
        finished = (DatasetVersionStatus.READY, DatasetVersionStatus.FAILED)
        self._wait("dataset", lambda: DatasetVersion.objects.get(batch=batch).status in finished, worker)
        version = DatasetVersion.objects.get(batch=batch)
        if version.status != DatasetVersionStatus.READY:
            raise CommandError(f"Building the dataset of {batch.name} failed: {version.error}")
        self.stdout.write(f"dataset: version {version.pk} ready, {version.train_rows} train and {version.eval_rows} "
                          f"eval rows, content hash {version.content_hash[:12]}")
        return version

    def _train(self, *, version: DatasetVersion, maintainer: User, worker: EmbeddedWorker) -> TrainingRun:
        run = run_latest_for_version(version=version)
        if run is None or run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            run = run_start(version=version, base_checkpoint=DEMO_BASE, recipe=DEMO_RECIPE, by=maintainer)
            self.stdout.write(f"training: run #{run.pk}, {DEMO_RECIPE.method} fine-tune of the demo base model, "
                              f"{DEMO_RECIPE.max_steps} steps on CPU")
        elif run.status != RunStatus.SUCCEEDED:
            self.stdout.write(f"training: run #{run.pk} is {run.status} from an earlier start; the worker "
                              f"resumes it once its heartbeat is {settings.RUN_HEARTBEAT_TIMEOUT_SECONDS} s old")
        self.stdout.write(f"  follow it at {self.url}runs/{run.pk}/")
        progress = _ProgressPrinter(self.stdout, run_id=run.pk)
        self._wait("run", progress.finished, worker, tick=progress.show)
        run = TrainingRun.objects.get(pk=run.pk)
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(f"Run #{run.pk} {run.status}: {run.error}\n{run.log_tail[-1500:]}")
        elapsed = (run.finished_at - run.started_at).total_seconds() if run.started_at and run.finished_at else 0
        self.stdout.write(f"training: succeeded in {elapsed:.0f} s, final loss {run.last_loss:.3f}")
        return run

    def _evaluate(self, *, run: TrainingRun, worker: EmbeddedWorker) -> Evaluation:
        self.stdout.write("evaluation: the worker scores the base and the tuned model ...")
        self.stdout.flush()
        waiting = (EvaluationStatus.PENDING, EvaluationStatus.RUNNING)
        self._wait("evaluation",
                   lambda: Evaluation.objects.filter(run=run).exclude(status__in=waiting).exists(), worker)
        evaluation = Evaluation.objects.get(run=run)
        if evaluation.status == EvaluationStatus.FAILED:
            raise CommandError(f"The evaluation of run #{run.pk} failed: {evaluation.error}")
        self.stdout.write(f"evaluation: {evaluation.status}")
        for scope in ("cases", "general"):
            before, after = evaluation.base_metrics.get(scope, {}), evaluation.tuned_metrics.get(scope, {})
            changes = [f"{name} {_num(before.get(name))} -> {_num(after.get(name))}"
                       for name in ("chrf", "exact_match", "loss")]
            self.stdout.write(f"  {scope + ':':9}" + "   ".join(changes))
        for line in evaluation.verdict.splitlines():
            self.stdout.write(f"  {line}")
        return evaluation

    def _publish(self, *, run: TrainingRun, evaluation: Evaluation, maintainer: User) -> Release:
        existing = release_for_run(run_id=run.pk)
        if existing is not None and existing.status == ReleaseStatus.PUBLISHED:
            return existing
        reason = ""
        if evaluation.status == EvaluationStatus.BLOCKED:
            reason = OVERRIDE_REASON
            self.stdout.write(self.style.WARNING(
                "release: the evaluation blocks publishing; the demo overrides it as the maintainer, "
                f"with the reason: {reason}"
            ))
        release = release_publish(run=run, by=maintainer, override_reason=reason)
        self.stdout.write(self.style.SUCCESS(f"release: {release.tag} published"))
        self.stdout.write(f"  page:   {self._release_url(release)}")
        self.stdout.write(f"  folder: {release_abspath(release=release)}")
        for file in release_files(release=release):
            self.stdout.write(f"    {file.name:44} {file.size:>10,} bytes")
        return release

    # -- printing --------------------------------------------------------------------

    def _latest_release(self) -> Release | None:
        return Release.objects.filter(status=ReleaseStatus.PUBLISHED).order_by("-published_at", "-id").first()

    def _release_url(self, release: Release) -> str:
        return self.url + reverse("releases:detail", args=[release.tag]).lstrip("/")

    def _print_ready(self, *, release: Release | None, username: str, password: str) -> None:
        self.stdout.write(self.style.SUCCESS("\ncotrain demo is ready"))
        self.stdout.write(f"  web app:    {self.url}")
        if release is not None:
            self.stdout.write(f"  release:    {self._release_url(release)}")
        self.stdout.write(f"  runs:       {self.url}runs/")
        self.stdout.write(f"  triage:     {self.url}triage/")
        self.stdout.write(f"  API docs:   {self.url}api/docs/")
        self.stdout.write(f"  maintainer: username {username}   password {password}\n")


class _ProgressPrinter:
    """Prints a run's step, loss and ETA (the fields the worker streams into its row) as they change.

    On a terminal one line is rewritten in place; otherwise (a log, a test) a line is
    printed at most every LOG_EVERY_S seconds.
    """

    LOG_EVERY_S = 5.0

    def __init__(self, out: OutputWrapper, *, run_id: int) -> None:
        self.out, self.run_id = out, run_id
        self.interactive = out.isatty()
        self.shown: tuple[str, int] | None = None
        self.last_print = 0.0

    def finished(self) -> bool:
        status = TrainingRun.objects.filter(pk=self.run_id).values_list("status", flat=True).first()
        done = status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
        if done and self.interactive and self.shown is not None:
            self.out.write("")  # end the line rewritten in place
        return done

    def show(self) -> None:
        run = TrainingRun.objects.get(pk=self.run_id)
        state = (run.status, run.step)
        if state == self.shown or (not self.interactive and time.monotonic() - self.last_print < self.LOG_EVERY_S
                                   and self.shown is not None and self.shown[0] == run.status):
            return
        self.shown, self.last_print = state, time.monotonic()
        if run.status == RunStatus.QUEUED or not run.step:
            line = f"  {run.status} (attempt {run.attempt}) ..."
        else:
            width = len(str(run.total_steps))
            line = (f"  step {run.step:>{width}}/{run.total_steps}  loss {_num(run.last_loss)}  "
                    f"ETA {run.eta_seconds // 60}:{run.eta_seconds % 60:02d}")
        if self.interactive:
            self.out.write(f"\r{line:<60}", ending="")
        else:
            self.out.write(line)
        self.out.flush()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _num(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
