"""The training loop on a real Celery worker process (Redis broker, PostgreSQL), not eager mode.

Each test drives runs through the services as the web app does, and a
`celery -A worker.celery_app worker -Q default,gpu -B` subprocess trains and
evaluates them with the real trainer on a tiny model. The worker uses its own
Redis database (REDIS_URL, 12 in the team's command line) and the test database. The
last test goes the whole way: approval, dataset, run, evaluation, release, download.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import trainer
from django.core.exceptions import ValidationError
from django.db import connection, connections
from django.test import Client
from django.urls import reverse
from trainer import contract
from trainer.data import load_examples
from trainer.evaluate import example_losses

from accounts.models import User
from curation.models import DatasetVersion, DatasetVersionStatus
from curation.selectors import dataset_version_abspath
from curation.services import batch_approve, batch_create
from intake.models import CaseStatus, FeedbackCase
from releases.models import Release, ReleaseStatus
from releases.services import release_request
from training.models import Evaluation, EvaluationStatus, RunStatus, TrainingRun
from training.selectors import run_dir_abspath
from training.services import run_cancel, run_start

from .conftest import REPO_ROOT
from .loop_factories import accepted_cases, built_version
from .training_support import TINY_RECIPE, write_general_subset

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
HEARTBEAT_TIMEOUT = 8


class Worker:
    """One `celery worker` process group, started and killed on demand."""

    def __init__(self, env: dict[str, str], log: Path, *, queues: str = "default,gpu", beat: bool = True,
                 prefix: tuple[str, ...] = ()) -> None:
        self.env, self.log, self.proc = env, log, None
        # `prefix` runs it under another command (test_fault_services: a host of its own, through unshare).
        self.queues, self.beat, self.prefix = queues, beat, prefix

    def start(self) -> None:
        command = [*self.prefix, sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
                   "-Q", self.queues, "-c", "1", *(["-B"] if self.beat else []),
                   "-s", self.env["COTRAIN_VAR_DIR"] + "/beat-schedule", "-l", "info",
                   "--without-gossip", "--without-mingle", "-n", f"e2e-{time.monotonic_ns()}@%h"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(command, cwd=REPO_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the whole worker (main process, pool, beat): a machine that died mid-run."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def worker_env(settings, tmp_path: Path, install_tiny_base: Callable[[Path], Path]) -> dict[str, str]:
    """The environment of a worker on the test database and this test's Redis database and artifact folder."""
    artifacts, var = tmp_path / "artifacts", tmp_path / "var"
    settings.ARTIFACT_ROOT = artifacts
    settings.DEMO_BASE_CHECKPOINT = install_tiny_base(artifacts / "models" / "yuan2-tiny-demo")
    broker = os.environ["REDIS_URL"]
    redis.Redis.from_url(broker).flushdb()  # this test's own Redis database: no message of an earlier run
    db = connection.settings_dict
    var.mkdir(parents=True)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "CELERY_", "COTRAIN_"))},
        "DJANGO_SETTINGS_MODULE": "cotrain_site.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": broker,
        "CELERY_BROKER_URL": broker,
        "COTRAIN_VAR_DIR": str(var),
        "COTRAIN_ARTIFACT_ROOT": str(artifacts),
        "COTRAIN_DEMO_BASE_CHECKPOINT": str(settings.DEMO_BASE_CHECKPOINT),
        "COTRAIN_GENERAL_EVAL_PATH": str(write_general_subset(tmp_path / "general.jsonl")),
        "COTRAIN_EVAL_MAX_NEW_TOKENS": "8",
        "COTRAIN_EVAL_SEQ_LEN": "128",
        "COTRAIN_RUN_PROGRESS_SECONDS": "0.5",
        "COTRAIN_RUN_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "COTRAIN_RUN_SWEEP_SECONDS": "2",
        "OMP_NUM_THREADS": "2",
    }


@pytest.fixture
def live(worker_env: dict[str, str], tmp_path: Path, contributor: User,
         maintainer: User) -> Iterator[tuple[Worker, DatasetVersion]]:
    # Built before the worker starts: the build message approval queued is then a no-op for it.
    version = built_version(author=contributor, maintainer=maintainer)
    worker = Worker(worker_env, tmp_path / "worker.log")
    worker.start()
    yield worker, version
    worker.stop()
    connections.close_all()


def wait_for(predicate: Callable[[], bool], worker: Worker, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}\n--- worker log ---\n{worker.tail()}")


def _run(pk: int) -> TrainingRun:
    return TrainingRun.objects.get(pk=pk)


def test_a_run_trains_and_is_evaluated_on_a_real_worker(live, maintainer: User) -> None:
    worker, version = live
    run = run_start(version=version, base_checkpoint="demo", recipe=TINY_RECIPE, by=maintainer)
    # (Progress streamed while training is checked by the cancel test: 8 steps pass between two polls here.)
    wait_for(lambda: _run(run.pk).status not in ("queued", "running"), worker, timeout=120, what="the run to finish")
    run = _run(run.pk)
    assert run.status == RunStatus.SUCCEEDED, (run.error, run.log_tail, worker.tail())
    assert run.attempt == 1 and run.step == run.total_steps == 8 and run.last_loss is not None
    folder = run_dir_abspath(run=run)
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "succeeded" and run.result["final_loss"] == result["final_loss"]
    assert (folder / "export" / "merged" / "SHA256SUMS").is_file()
    platform = json.loads((folder / "platform.json").read_text())
    assert platform["dataset"]["content_hash"] == version.content_hash
    assert platform["dataset"]["path"] == str(dataset_version_abspath(version=version))
    wait_for(lambda: Evaluation.objects.filter(run=run).exclude(status__in=["pending", "running"]).exists(),
             worker, timeout=120, what="the evaluation")
    evaluation = Evaluation.objects.get(run=run)
    assert evaluation.status in (EvaluationStatus.PASSED, EvaluationStatus.BLOCKED), evaluation.error
    assert evaluation.verdict and len(evaluation.per_case) == version.eval_rows
    assert set(evaluation.base_metrics) == {"cases", "general"} and evaluation.tuned_metrics["general_counts"]["n"] == 3
    # Cases improve on loss after a few steps on them: the tuned model fits its own data.
    assert evaluation.tuned_metrics["cases"]["loss"] < evaluation.base_metrics["cases"]["loss"]
    # The run folder holds the contract's files and nothing else: the platform's inputs, the launcher's,
    # the trainer's outputs and one folder per evaluated set.
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        {*contract.INPUTS, *contract.LAUNCHER_FILES, *contract.TRAIN_OUTPUTS, contract.EVALUATIONS})
    for name in ("cases", "general"):
        assert sorted(p.name for p in (folder / contract.EVALUATIONS / name).iterdir()) == sorted(
            {*contract.COMPARISON_OUTPUTS, *contract.LAUNCHER_FILES})


def test_cancel_stops_the_trainer(live, maintainer: User) -> None:
    worker, version = live
    run = run_start(version=version, base_checkpoint="demo", recipe=replace(TINY_RECIPE, max_steps=2000), by=maintainer)
    wait_for(lambda: _run(run.pk).step >= 2, worker, timeout=90, what="training to start")
    run_cancel(run=_run(run.pk), by=maintainer)
    wait_for(lambda: _run(run.pk).status == RunStatus.CANCELLED, worker, timeout=60, what="the cancel")
    run = _run(run.pk)
    assert 2 <= run.step < 2000 and run.finished_at is not None
    assert json.loads((run_dir_abspath(run=run) / "result.json").read_text())["status"] == "cancelled"
    assert not Evaluation.objects.filter(run=run).exists()
    # A new run on the batch may start now.
    assert run_start(version=version, base_checkpoint="demo", recipe=TINY_RECIPE, by=maintainer).pk != run.pk


def test_a_killed_worker_leaves_a_run_that_the_next_worker_resumes(live, maintainer: User) -> None:
    worker, version = live
    # Enough steps that the run cannot finish between the platform seeing a checkpoint and the kill: the tiny
    # model trains tens of steps a second, and the platform learns the step only at its next progress poll.
    steps = 400
    recipe = replace(TINY_RECIPE, max_steps=steps, checkpoint_every=4, eval_max_new_tokens=4)
    run = run_start(version=version, base_checkpoint="demo", recipe=recipe, by=maintainer)
    folder = run_dir_abspath(run=TrainingRun.objects.get(pk=run.pk))
    wait_for(lambda: any((folder / "checkpoints").glob("step_*/COMPLETE")) and _run(run.pk).step >= 5, worker,
             timeout=90, what="a first checkpoint")
    worker.kill()
    assert _run(run.pk).status == RunStatus.RUNNING  # nobody told the platform
    worker.start()
    wait_for(lambda: _run(run.pk).status not in ("queued", "running"), worker, timeout=HEARTBEAT_TIMEOUT + 120,
             what="the resumed run")
    run = _run(run.pk)
    assert run.status == RunStatus.SUCCEEDED, (run.error, run.log_tail)
    assert run.attempt == 2 and run.step == steps
    result = json.loads((folder / "result.json").read_text())
    assert result["resumed_from_step"] and result["resumed_from_step"] >= 2
    # metrics.jsonl holds each step once: the lost attempt's steps after its checkpoint were replaced.
    logged = [r["step"] for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
              if r["kind"] == "train"]
    assert logged == list(range(1, steps + 1))


def test_a_tampered_dataset_fails_the_run_and_the_trainer_never_starts(live, maintainer: User) -> None:
    worker, version = live
    card = dataset_version_abspath(version=version) / "README.md"
    card.write_text(card.read_text(encoding="utf-8") + "\nedited after approval\n", encoding="utf-8")
    run = run_start(version=version, base_checkpoint="demo", recipe=TINY_RECIPE, by=maintainer)
    wait_for(lambda: _run(run.pk).status == RunStatus.FAILED, worker, timeout=60, what="the refusal")
    run = _run(run.pk)
    assert "no longer matches its content hash" in run.error and "README.md changed" in run.error
    assert not (run_dir_abspath(run=run) / "trainer.log").exists()


def test_concurrent_duplicate_requests_start_one_run(live, maintainer: User) -> None:
    _, version = live
    outcomes: list[str] = []

    def request() -> None:
        try:
            run_start(version=version, base_checkpoint="demo", recipe=TINY_RECIPE, by=maintainer)
            outcomes.append("started")
        except ValidationError as exc:
            outcomes.append(" ".join(exc.messages))
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("started") == 1 and all("already has run" in o for o in outcomes if o != "started")
    assert TrainingRun.objects.filter(dataset_version=version).count() == 1
    run = TrainingRun.objects.get(dataset_version=version)
    run_cancel(run=run, by=maintainer)


def test_the_loop_from_approval_to_a_downloaded_release(worker_env: dict[str, str], tmp_path: Path,
                                                         contributor: User, maintainer: User) -> None:
    """approve -> dataset version -> run -> evaluation -> publish, all on the worker; then download over HTTP."""
    worker = Worker(worker_env, tmp_path / "worker.log")
    worker.start()
    try:
        cases = accepted_cases(author=contributor, maintainer=maintainer)
        # The test commits at once (transaction=True): approval's on-commit build message reaches the worker.
        batch = batch_approve(batch=batch_create(by=maintainer, name="plan-e2e"), by=maintainer)
        version = DatasetVersion.objects.get(batch=batch)
        wait_for(lambda: DatasetVersion.objects.get(pk=version.pk).status in ("ready", "failed"), worker,
                 timeout=120, what="the dataset version")
        version = DatasetVersion.objects.get(pk=version.pk)
        assert version.status == DatasetVersionStatus.READY, version.error
        # LoRA: the release then holds the adapter next to the merged checkpoint. A higher rate and more steps
        # than TINY_RECIPE's, so that the adapter fits its training cases well (checked on the release below).
        recipe = replace(TINY_RECIPE, method="lora", lr=1e-2, max_steps=24)
        run = run_start(version=version, base_checkpoint="demo", recipe=recipe, by=maintainer)
        wait_for(lambda: _run(run.pk).status not in ("queued", "running"), worker, timeout=180, what="the run")
        assert _run(run.pk).status == RunStatus.SUCCEEDED, (_run(run.pk).error, worker.tail())
        wait_for(lambda: Evaluation.objects.filter(run=run).exclude(status__in=["pending", "running"]).exists(),
                 worker, timeout=180, what="the evaluation")
        evaluation = Evaluation.objects.get(run=run)
        assert evaluation.status in (EvaluationStatus.PASSED, EvaluationStatus.BLOCKED), evaluation.error
        # A random tiny base may regress on the general set; the maintainer then overrides with a reason.
        reason = "" if evaluation.status == EvaluationStatus.PASSED else "End-to-end test of the loop: publish anyway."
        # The publish page's path: the copy runs as a task on the worker's default queue.
        release = release_request(run=_run(run.pk), by=maintainer, tag="e2e-1", override_reason=reason)
        wait_for(lambda: Release.objects.get(pk=release.pk).status != ReleaseStatus.PUBLISHING, worker,
                 timeout=60, what="the release")
        assert Release.objects.get(pk=release.pk).status == ReleaseStatus.PUBLISHED
    finally:
        worker.stop()
        connections.close_all()
    assert {c.status for c in FeedbackCase.objects.filter(pk__in=[c.pk for c in cases])} == {CaseStatus.RELEASED}

    client = Client()
    sums = _download(client, "e2e-1", "SHA256SUMS").decode()
    listed = dict(line.split("  ", 1)[::-1] for line in sums.splitlines())
    assert {"README.md", "merged/model.safetensors", "merged/config.json", "adapter/adapter_config.json"} <= set(listed)
    downloaded = tmp_path / "downloaded"
    for name, digest in listed.items():
        body = _download(client, "e2e-1", name)
        assert hashlib.sha256(body).hexdigest() == digest, name
        (downloaded / name).parent.mkdir(parents=True, exist_ok=True)
        (downloaded / name).write_bytes(body)

    # A resumed download: the first KiB, then the rest from where it stopped.
    url = reverse("releases:file", args=["e2e-1", "merged/model.safetensors"])
    whole = (downloaded / "merged" / "model.safetensors").read_bytes()
    head = client.get(url, HTTP_RANGE="bytes=0-1023")
    tail = client.get(url, HTTP_RANGE="bytes=1024-")
    assert head.status_code == tail.status_code == 206
    assert tail["Content-Range"] == f"bytes 1024-{len(whole) - 1}/{len(whole)}"
    assert _body(head) + _body(tail) == whole

    # The release is the trained model: it loads, and on the cases it was trained on (those that fit the run's
    # seq_len) it scores clearly better than its base. Random tiny models all score within 0.03 of each other
    # there, and an untrained or unmerged release scores exactly as the base does.
    trained = load_examples(dataset_version_abspath(version=version), "train")
    tokenizer = trainer.load_tokenizer(downloaded / "merged")
    released = example_losses(trainer.load_model(downloaded / "merged"), tokenizer, trained, recipe.seq_len)
    base = example_losses(trainer.load_model(worker_env["COTRAIN_DEMO_BASE_CHECKPOINT"]), tokenizer, trained,
                          recipe.seq_len)
    assert released and released.keys() == base.keys()
    mean_released, mean_base = sum(released.values()) / len(released), sum(base.values()) / len(base)
    assert mean_released < mean_base - 0.25, (released, base)


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def _download(client: Client, tag: str, name: str) -> bytes:
    response = client.get(reverse("releases:file", args=[tag, name]))
    assert response.status_code == 200, (name, response.status_code)
    body = _body(response)
    assert int(response["Content-Length"]) == len(body) and response["ETag"]
    return body
