"""Every job of the loop is recoverable: lost messages are sent again, dead builds rebuilt, failed jobs retried.

The broker is real where it matters: approving while it is down talks to a closed
port; the sweepers' messages are captured at `celery_app.send_task`, the boundary
between the platform and the broker. The fault tests with real workers and
restarted services are in test_fault_services.py.
"""

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone
from trainer import contract

from accounts.models import User
from cotrain_site import celery_app
from curation.models import DatasetVersion, DatasetVersionStatus
from curation.services import (
    batch_create,
    dataset_curate,
    dataset_curated_hash,
    dataset_version_build,
    dataset_version_retry,
    dataset_version_transition,
)
from curation.tasks import sweep_dataset_builds
from releases.models import Release, ReleaseStatus
from releases.services import release_request
from releases.tasks import sweep_stale_publishing
from training.models import Evaluation, EvaluationStatus, RunStatus, TrainingRun
from training.services import evaluation_retry, evaluation_transition, run_claim, run_finish, run_retry, run_start
from training.tasks import sweep_stale
from worker import launcher

from .conftest import REPO_ROOT
from .loop_factories import accepted_cases, approved_batch, built_version, finished_run, write_export
from .training_support import TINY_RECIPE

BUILD, TRAIN, EVALUATE, PUBLISH = ("curation.tasks.build_dataset_version", "training.tasks.train_run",
                                   "training.tasks.evaluate_run", "releases.tasks.publish_release")


@contextmanager
def web_broker(url: str) -> Iterator[None]:
    """Point this process's Celery app (the web side) at another broker, then back.

    The app caches its connection and producer pools for the URL it first used; both are dropped.
    """
    def reset() -> None:
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    saved = celery_app.conf.broker_url
    celery_app.conf.broker_url = url
    reset()
    try:
        yield
    finally:
        celery_app.conf.broker_url = saved
        reset()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path: Path) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, tuple]]:
    """The messages the platform hands to the broker, as (task name, args)."""
    messages: list[tuple[str, tuple]] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args: messages.append((name, tuple(args))))
    return messages


def _age(model: type, pk: int, **fields: int) -> None:
    """Move timestamps back by that many seconds (a message sent, a claim taken, that long ago)."""
    now = timezone.now()
    model.objects.filter(pk=pk).update(**{name: now - timedelta(seconds=s) for name, s in fields.items()})


# -- dataset builds ----------------------------------------------------------------


def test_approval_with_the_broker_down_answers_normally_and_keeps_the_job(
    contributor: User, maintainer: User, client_for: Callable, django_capture_on_commit_callbacks, settings,
    monkeypatch
) -> None:
    accepted_cases(author=contributor, maintainer=maintainer, count=3)
    batch = batch_create(by=maintainer, name="broker-down")
    # The real send, to a port where no broker listens.
    with web_broker(f"redis://127.0.0.1:{closed_port()}/0"), django_capture_on_commit_callbacks(execute=True):
        response = client_for(maintainer).post(reverse("curation:batch_approve", args=[batch.pk]), follow=True)
    assert response.status_code == 200 and "Approved: the dataset is being built." in response.content.decode()
    version = DatasetVersion.objects.get(batch=batch)
    assert version.status == DatasetVersionStatus.PENDING
    # The sweeper sends it once the wait is over, and only once per wait.
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args: sent.append((name, tuple(args))))
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_dataset_builds.run() == {"requeued": 0}
    _age(DatasetVersion, version.pk, enqueued_at=settings.JOB_REQUEUE_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_dataset_builds.run() == {"requeued": 1}
        assert sweep_dataset_builds.run() == {"requeued": 0}
    assert sent == [(BUILD, (version.pk,))]
    assert dataset_version_build(version_id=version.pk).status == DatasetVersionStatus.READY


def test_a_build_whose_worker_died_is_queued_again_and_rebuilt_from_scratch(
    contributor: User, maintainer: User, settings, sent, django_capture_on_commit_callbacks
) -> None:
    batch = approved_batch(author=contributor, maintainer=maintainer)
    version = dataset_version_transition(version=DatasetVersion.objects.get(batch=batch),
                                         to_status=DatasetVersionStatus.BUILDING)
    root = settings.ARTIFACT_ROOT / "datasets"
    # What the SIGKILLed attempt left: its half-written hidden folder (its `finally` never ran).
    (root / f".{batch.name}.building-1" / "train").mkdir(parents=True)
    (root / f".{batch.name}.building-1" / "train" / "data-00000-of-00001.arrow").write_bytes(b"half")
    # A live build (fresh claim) is left alone, by the sweeper and by a duplicate message.
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_dataset_builds.run() == {"requeued": 0}
    assert dataset_version_build(version_id=version.pk).status == DatasetVersionStatus.BUILDING
    _age(DatasetVersion, version.pk, claimed_at=settings.DATASET_BUILD_TIMEOUT_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_dataset_builds.run() == {"requeued": 1}
    version.refresh_from_db()
    assert version.status == DatasetVersionStatus.PENDING and "stopped without finishing" in version.error
    assert sent == [(BUILD, (version.pk,))]
    built = dataset_version_build(version_id=version.pk)
    assert built.status == DatasetVersionStatus.READY and built.attempt == 2
    assert built.content_hash == dataset_curated_hash(curated=dataset_curate(batch=batch))
    assert [p.name for p in root.iterdir()] == [batch.name]


def test_an_older_build_attempt_records_nothing_once_a_newer_one_claimed(
    contributor: User, maintainer: User, settings, monkeypatch
) -> None:
    from curation.services import dataset_versions

    batch = approved_batch(author=contributor, maintainer=maintainer)
    version = DatasetVersion.objects.get(batch=batch)
    real_write = dataset_versions._write_dataset

    def write_while_taken_over(**kwargs: object) -> dict:
        manifest = real_write(**kwargs)
        # The sweeper took this slow build for dead and another worker claimed attempt 2.
        _age(DatasetVersion, version.pk, claimed_at=settings.DATASET_BUILD_TIMEOUT_SECONDS + 1)
        assert dataset_versions._claim(version_id=version.pk).attempt == 2
        return manifest

    monkeypatch.setattr(dataset_versions, "_write_dataset", write_while_taken_over)
    stale = dataset_version_build(version_id=version.pk)
    assert stale.status == DatasetVersionStatus.BUILDING and stale.attempt == 2 and stale.path == ""
    assert not (settings.ARTIFACT_ROOT / "datasets" / batch.name).exists()


def test_a_maintainer_retries_a_failed_build_from_the_batch_page(
    contributor: User, maintainer: User, client_for: Callable, settings, sent, django_capture_on_commit_callbacks
) -> None:
    batch = approved_batch(author=contributor, maintainer=maintainer)
    version = DatasetVersion.objects.get(batch=batch)
    # A permission error that outlasted the task's retries.
    settings.ARTIFACT_ROOT.mkdir(parents=True, exist_ok=True)
    (settings.ARTIFACT_ROOT / "datasets").write_text("not a folder")
    with pytest.raises(OSError):
        dataset_version_build(version_id=version.pk)
    (settings.ARTIFACT_ROOT / "datasets").unlink()
    version.refresh_from_db()
    assert version.status == DatasetVersionStatus.FAILED
    client = client_for(maintainer)
    page = client.get(reverse("curation:batch_detail", args=[batch.pk])).content.decode()
    assert 'id="retry-build-form"' in page
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(reverse("curation:dataset_version_retry", args=[batch.pk]), follow=True).content.decode()
    assert "Build queued again." in page and 'id="retry-build-form"' not in page
    version.refresh_from_db()
    assert version.status == DatasetVersionStatus.PENDING and version.error.startswith("Retried by maint")
    assert sent == [(BUILD, (version.pk,))]
    # Only a failed build can be retried; the refusal is a message, and nothing is written or sent.
    page = client.post(reverse("curation:dataset_version_retry", args=[batch.pk]), follow=True).content.decode()
    assert "only a failed build can be retried" in page and len(sent) == 1
    assert dataset_version_build(version_id=version.pk).status == DatasetVersionStatus.READY


def test_only_maintainers_retry_builds(contributor: User, maintainer: User, client_for: Callable) -> None:
    batch = approved_batch(author=contributor, maintainer=maintainer)
    version = DatasetVersion.objects.get(batch=batch)
    with pytest.raises(PermissionDenied):
        dataset_version_retry(version=version, by=contributor)
    assert client_for(contributor).post(reverse("curation:dataset_version_retry", args=[batch.pk])).status_code == 403
    with pytest.raises(ValidationError, match="only a failed build"):
        dataset_version_retry(version=version, by=maintainer)


# -- runs and evaluations ------------------------------------------------------------


@pytest.fixture
def version(contributor: User, maintainer: User, settings, install_tiny_base: Callable[[Path], Path]) -> DatasetVersion:
    settings.DEMO_BASE_CHECKPOINT = install_tiny_base(settings.ARTIFACT_ROOT / "models" / "demo")
    return built_version(author=contributor, maintainer=maintainer)


def test_a_queued_run_whose_message_was_lost_is_sent_again_and_stops_blocking_its_batch(
    version: DatasetVersion, maintainer: User, settings, sent, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run = run_start(version=version, base_checkpoint="demo", recipe=TINY_RECIPE, by=maintainer)
    assert sent == [(TRAIN, (run.pk,))]
    # The broker restarted without persistence: that message is gone, and the run waits `queued`.
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_stale.run()["lost_runs"] == 0
    _age(TrainingRun, run.pk, enqueued_at=settings.JOB_REQUEUE_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_stale.run()["lost_runs"] == 1
        assert sweep_stale.run()["lost_runs"] == 0  # stamped: not sent again before the next wait
    assert sent == [(TRAIN, (run.pk,)), (TRAIN, (run.pk,))]
    # The duplicate is a no-op: one claim wins.
    assert run_claim(run_id=run.pk, worker="w1").attempt == 1
    assert run_claim(run_id=run.pk, worker="w2") is None


def test_a_pending_evaluation_whose_message_was_lost_is_sent_again(
    version: DatasetVersion, maintainer: User, settings, sent, django_capture_on_commit_callbacks
) -> None:
    run = run_claim(run_id=run_start(version=version, base_checkpoint="demo", recipe=TINY_RECIPE, by=maintainer).pk,
                    worker="w1")
    with django_capture_on_commit_callbacks(execute=True):
        run_finish(run=run, status=RunStatus.SUCCEEDED, result={"status": "succeeded", "steps": 8})
    evaluation = Evaluation.objects.get(run=run)
    assert sent == [(EVALUATE, (run.pk,))]
    _age(Evaluation, evaluation.pk, enqueued_at=settings.JOB_REQUEUE_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_stale.run()["lost_evaluations"] == 1
        assert sweep_stale.run()["lost_evaluations"] == 0
    assert sent == [(EVALUATE, (run.pk,))] * 2


def test_a_maintainer_retries_a_failed_run_and_a_failed_evaluation_from_the_run_page(
    version: DatasetVersion, maintainer: User, contributor: User, client_for: Callable, sent,
    django_capture_on_commit_callbacks
) -> None:
    run = run_claim(run_id=run_start(version=version, base_checkpoint="demo", recipe=TINY_RECIPE, by=maintainer).pk,
                    worker="w1")
    run = run_finish(run=run, status=RunStatus.FAILED, result={}, error="Training failed: CUDA out of memory")
    with pytest.raises(PermissionDenied):
        run_retry(run=run, by=contributor)
    client = client_for(maintainer)
    page = client.get(reverse("training:run_detail", args=[run.pk])).content.decode()
    assert 'id="retry-run-form"' in page
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(reverse("training:run_retry", args=[run.pk]), follow=True).content.decode()
    assert "queued again" in page
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.finished_at is None and "CUDA out of memory" in run.error
    assert sent == [(TRAIN, (run.pk,))]
    # Its run folder is kept: the next attempt resumes there.
    again = run_claim(run_id=run.pk, worker="w2")
    assert again.attempt == 2 and again.run_dir == run.run_dir
    with pytest.raises(ValidationError, match="only a failed run"):
        run_retry(run=run, by=maintainer)
    run_finish(run=again, status=RunStatus.FAILED, result={}, error="Training failed again.")

    evaluated = finished_run(version=version, maintainer=maintainer, evaluation="failed")
    page = client.get(reverse("training:run_detail", args=[evaluated.pk])).content.decode()
    assert 'id="retry-evaluation-form"' in page
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(reverse("training:evaluation_retry", args=[evaluated.pk]), follow=True).content.decode()
    assert "The evaluation is queued again." in page
    evaluation = Evaluation.objects.get(run=evaluated)
    assert evaluation.status == EvaluationStatus.PENDING and sent[-1] == (EVALUATE, (evaluated.pk,))
    with pytest.raises(ValidationError, match="only a failed one"):
        evaluation_retry(evaluation=evaluation, by=maintainer)
    assert evaluation_transition(evaluation=evaluation, to_status=EvaluationStatus.RUNNING).attempt == 2


def test_a_failed_run_is_not_retried_while_another_run_is_active_on_its_batch(
    version: DatasetVersion, maintainer: User
) -> None:
    first = run_claim(run_id=run_start(version=version, base_checkpoint="demo", recipe=TINY_RECIPE, by=maintainer).pk,
                      worker="w1")
    first = run_finish(run=first, status=RunStatus.FAILED, result={}, error="boom")
    second = run_start(version=version, base_checkpoint="demo", recipe=TINY_RECIPE, by=maintainer)
    with pytest.raises(ValidationError, match=rf"already has run #{second.pk}"):
        run_retry(run=first, by=maintainer)
    first.refresh_from_db()
    assert first.status == RunStatus.FAILED


# -- releases ------------------------------------------------------------------------


def test_a_release_whose_publish_message_was_lost_is_sent_again(
    version: DatasetVersion, maintainer: User, settings, sent, django_capture_on_commit_callbacks
) -> None:
    run = finished_run(version=version, maintainer=maintainer)
    write_export(run)
    with django_capture_on_commit_callbacks(execute=True):
        release = release_request(run=run, by=maintainer, tag="lost-1")
    assert sent == [(PUBLISH, (release.pk, maintainer.pk))]
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_stale_publishing.run() == {"requeued": 0, "failed": 0, "lost": 0}
    # No copy ever claimed it: it need not wait the copy's whole timeout.
    _age(Release, release.pk, heartbeat_at=settings.JOB_REQUEUE_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_stale_publishing.run() == {"requeued": 0, "failed": 0, "lost": 1}
        assert sweep_stale_publishing.run() == {"requeued": 0, "failed": 0, "lost": 0}
    assert sent == [(PUBLISH, (release.pk, maintainer.pk))] * 2
    from releases.tasks import publish_release

    assert publish_release.run(release.pk, maintainer.pk)["status"] == ReleaseStatus.PUBLISHED


# -- the run folder's lock -----------------------------------------------------------


def test_a_second_launch_on_a_run_folder_waits_for_the_first_trainer(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first_started = threading.Event()
    outcomes: list[int] = []

    def first() -> None:
        outcomes.append(launcher.launch(["sleep", "2"], run_dir=run_dir, poll_seconds=0.1,
                                        on_progress=lambda _: first_started.set()).exit_code)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_started.wait(10)
    with pytest.raises(launcher.FolderBusy):
        launcher.launch(["true"], run_dir=run_dir, poll_seconds=0.1)
    waits: list[float] = []
    began = time.monotonic()
    second = launcher.launch(["true"], run_dir=run_dir, poll_seconds=0.1, lock_wait_seconds=30,
                             on_progress=lambda records: waits.append(time.monotonic()))
    thread.join()
    # It started only once the first trainer was gone, heartbeating (on_progress) while it waited.
    assert outcomes == [0] and second.exit_code == 0 and time.monotonic() - began >= 1.0
    assert len(waits) >= 5


def test_a_waiting_launch_stops_when_its_caller_loses_the_claim(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    held = launcher.lock_folder(run_dir)

    class Lost(Exception):
        pass

    def heartbeat(records: list) -> None:
        raise Lost

    try:
        with pytest.raises(Lost):
            launcher.launch(["true"], run_dir=run_dir, poll_seconds=0.1, lock_wait_seconds=30, on_progress=heartbeat)
    finally:
        os.close(held)
    assert not (run_dir / contract.TRAINER_LOG).exists()  # no trainer was started


# -- configuration -------------------------------------------------------------------


def test_the_sweepers_are_on_the_beat_schedule_and_redis_persists_its_queue(settings) -> None:
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"curation.tasks.sweep_dataset_builds", "training.tasks.sweep_stale",
            "releases.tasks.sweep_stale_publishing"} <= tasks
    redis = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


# -- the one job mechanism -------------------------------------------------------------


@pytest.mark.django_db
def test_every_job_kind_names_a_registered_task_real_fields_and_a_swept_beat() -> None:
    """Each app's `Job` is data the mechanism reads by name: a typo in a field, a task or a timeout would only
    show when a worker died in production. The sweeper of each kind must be on the beat schedule."""
    from django.conf import settings

    from cotrain_site.jobs import Job
    from curation.services import BUILD_JOB
    from ghsync.services.comments import POST_JOB
    from ghsync.services.webhooks import DELIVERY_JOB
    from releases.services import PUBLISH_JOB
    from training.services import EVALUATION_JOB, RUN_JOB

    celery_app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    sweepers = {RUN_JOB: "training.tasks.sweep_stale", EVALUATION_JOB: "training.tasks.sweep_stale",
                BUILD_JOB: "curation.tasks.sweep_dataset_builds", PUBLISH_JOB: "releases.tasks.sweep_stale_publishing",
                DELIVERY_JOB: "ghsync.tasks.sweep_stale", POST_JOB: "ghsync.tasks.sweep_stale"}
    for job, sweeper in sweepers.items():
        assert isinstance(job, Job)
        assert job.task in celery_app.tasks and sweeper in celery_app.tasks and sweeper in scheduled, job.task
        names = {field.name for field in job.model._meta.get_fields()}
        assert {job.attempt_field, job.beat_field, job.sent_field} <= names, job.task
        assert job.timeout().total_seconds() > 0
        # The conditions are valid queries on the model.
        list(job.model.objects.filter(job.claimable() | job.lost()).values_list("pk", flat=True))
