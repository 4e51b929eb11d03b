"""Fault tests against real services: workers SIGKILLed, Redis and PostgreSQL restarted, two GPU workers at once.

Every restarted service is a private instance of this test (redis-server and a
PostgreSQL cluster initialised into a temporary folder, on free ports); the shared
servers are never touched. Workers are real `celery worker` processes
(test_worker_e2e.Worker) running the real trainer on a tiny model.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from django.db import connections
from django.utils import timezone

from accounts.models import User
from cotrain_site import celery_app
from curation.models import DatasetVersion, DatasetVersionStatus
from curation.services import (
    batch_approve,
    batch_create,
    dataset_curate,
    dataset_curated_hash,
    dataset_version_verify,
)
from training.models import RunStatus, TrainingRun
from training.selectors import run_dir_abspath
from training.services import run_start

from .conftest import REPO_ROOT
from .loop_factories import accepted_cases, built_version
from .test_job_recovery import closed_port, web_broker
from .test_worker_e2e import Worker, wait_for, worker_env  # noqa: F401 (a fixture: imported, it serves here too)
from .training_support import TINY_RECIPE

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fault_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """test_worker_e2e's worker environment: the test database, this test's Redis database and artifact folder."""
    return request.getfixturevalue("worker_env")


class PrivateRedis:
    """A redis-server of this test alone, without persistence: a restart loses every queued message."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port, self.proc = folder, closed_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url).ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("the private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def queued(self) -> int:
        client = redis.Redis.from_url(self.url)
        return client.llen("default") + client.llen("gpu")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


class PrivatePostgres:
    """A PostgreSQL cluster of this test alone, run as the `postgres` OS user, that the test may restart."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its parents are root's alone, and the server runs as `postgres`.
        self.folder = Path(tempfile.mkdtemp(prefix="cotrain-pg-"))
        shutil.chown(self.folder, "postgres")
        self.data, self.port = self.folder / "data", closed_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/cotrain_fault"
        self._as_postgres(["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"])

    def _as_postgres(self, command: list[str]) -> None:
        program = shutil.which(command[0]) or command[0]  # runuser's PATH may lack the server's folder
        subprocess.run(["runuser", "-u", "postgres", "--", program, *command[1:]], check=True, capture_output=True,
                       timeout=120)

    def start(self) -> None:
        self._as_postgres(["pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w",
                           "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off",
                           "start"])

    def stop(self) -> None:
        self._as_postgres(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._as_postgres(["pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.folder, ignore_errors=True)


def _version(pk: int) -> DatasetVersion:
    return DatasetVersion.objects.get(pk=pk)


def _run(pk: int) -> TrainingRun:
    return TrainingRun.objects.get(pk=pk)


def _approve(contributor: User, maintainer: User, name: str) -> DatasetVersion:
    accepted_cases(author=contributor, maintainer=maintainer)
    batch = batch_approve(batch=batch_create(by=maintainer, name=name), by=maintainer)
    return DatasetVersion.objects.get(batch=batch)


def _expected_hash(version: DatasetVersion) -> str:
    return dataset_curated_hash(curated=dataset_curate(batch=version.batch))


def test_a_worker_killed_mid_build_leaves_a_version_that_the_sweeper_rebuilds(
    fault_env: dict[str, str], tmp_path: Path, contributor: User, maintainer: User, settings
) -> None:
    env = {**fault_env, "COTRAIN_DATASET_BUILD_TIMEOUT": "6", "COTRAIN_DATASET_SWEEP_SECONDS": "1"}
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    try:
        version = _approve(contributor, maintainer, "plan-killed")
        datasets = settings.ARTIFACT_ROOT / "datasets"
        wait_for(lambda: any(datasets.glob(".plan-killed.building-*")), worker, timeout=60,
                 what="the build to start writing")
        worker.kill()
        assert _version(version.pk).status == DatasetVersionStatus.BUILDING
        assert any(datasets.glob(".plan-killed.building-*"))  # SIGKILL: no `finally` cleaned it up
        worker.start()
        wait_for(lambda: _version(version.pk).status == DatasetVersionStatus.READY, worker, timeout=90,
                 what="the sweeper's rebuild")
    finally:
        worker.stop()
        connections.close_all()
    version = _version(version.pk)
    assert version.attempt == 2 and version.content_hash == _expected_hash(version)
    dataset_version_verify(version=version)
    assert [p.name for p in (settings.ARTIFACT_ROOT / "datasets").iterdir()] == ["plan-killed"]


def test_approval_with_the_broker_down_is_built_once_the_broker_is_back(
    fault_env: dict[str, str], tmp_path: Path, contributor: User, maintainer: User, private_redis: PrivateRedis
) -> None:
    env = {**fault_env, "REDIS_URL": private_redis.url, "CELERY_BROKER_URL": private_redis.url,
           "COTRAIN_JOB_REQUEUE_SECONDS": "2", "COTRAIN_DATASET_SWEEP_SECONDS": "1"}
    private_redis.stop()
    with web_broker(private_redis.url):
        version = _approve(contributor, maintainer, "plan-broker-down")  # commits: the send fails, then is logged
    assert _version(version.pk).status == DatasetVersionStatus.PENDING
    private_redis.start()
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    try:
        wait_for(lambda: _version(version.pk).status == DatasetVersionStatus.READY, worker, timeout=90,
                 what="the sweeper to send the build")
    finally:
        worker.stop()
        connections.close_all()
    assert _version(version.pk).content_hash == _expected_hash(_version(version.pk))


def test_a_redis_restart_that_loses_the_queue_strands_nothing(
    fault_env: dict[str, str], tmp_path: Path, contributor: User, maintainer: User, private_redis: PrivateRedis
) -> None:
    env = {**fault_env, "REDIS_URL": private_redis.url, "CELERY_BROKER_URL": private_redis.url,
           "COTRAIN_JOB_REQUEUE_SECONDS": "3", "COTRAIN_DATASET_SWEEP_SECONDS": "1"}
    ready = built_version(author=contributor, maintainer=maintainer, name="plan-ready")
    with web_broker(private_redis.url):
        run = run_start(version=ready, base_checkpoint="demo", recipe=TINY_RECIPE, by=maintainer)
        pending = _approve(contributor, maintainer, "plan-pending")
    assert private_redis.queued() == 2  # the train and build messages, waiting for a worker
    private_redis.stop()
    private_redis.start()
    assert private_redis.queued() == 0
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    try:
        wait_for(lambda: _version(pending.pk).status == DatasetVersionStatus.READY, worker, timeout=90,
                 what="the lost build")
        wait_for(lambda: _run(run.pk).status not in (RunStatus.QUEUED, RunStatus.RUNNING), worker, timeout=180,
                 what="the lost run")
    finally:
        worker.stop()
        connections.close_all()
    assert _run(run.pk).status == RunStatus.SUCCEEDED and _run(run.pk).attempt == 1


_SETUP = """
import json, sys
from tests.web import conftest  # django.setup() on DATABASE_URL, the private server
from accounts.services import user_create, user_make_maintainer
from tests.web.loop_factories import built_version
from tests.web.training_support import TINY_RECIPE
from training.services import run_start
from dataclasses import replace

author = user_create(username="author", password=conftest.PASSWORD)
maintainer = user_make_maintainer(user=user_create(username="maint", password=conftest.PASSWORD))
version = built_version(author=author, maintainer=maintainer)
recipe = replace(TINY_RECIPE, max_steps=int(sys.argv[1]), checkpoint_every=50, eval_max_new_tokens=4)
print(json.dumps({"run": run_start(version=version, base_checkpoint="demo", recipe=recipe, by=maintainer).pk}))
"""


def test_a_postgres_restart_mid_run_neither_freezes_nor_fails_the_run(
    fault_env: dict[str, str], tmp_path: Path
) -> None:
    server = PrivatePostgres()
    try:
        server.start()
        with psycopg.connect(server.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            admin.execute("CREATE DATABASE cotrain_fault")
        env = {**fault_env, "DATABASE_URL": server.url, "COTRAIN_RUN_HEARTBEAT_TIMEOUT": "40"}
        for args in (["manage.py", "migrate", "--noinput", "--skip-checks"], ["-c", _SETUP, "600"]):
            done = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                  timeout=300, check=False)
            assert done.returncode == 0, done.stderr[-3000:]
        run_id = json.loads(done.stdout.strip().splitlines()[-1])["run"]
        worker = Worker(env, tmp_path / "worker.log")
        worker.start()
        try:
            _restart_mid_run(server, worker, run_id)
        finally:
            worker.stop()
    finally:
        server.remove()


def _read_run(url: str, run_id: int) -> dict | None:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SELECT status, step, attempt, heartbeat_at, error FROM training_trainingrun "
                               "WHERE id = %s", [run_id]).fetchone()
    except psycopg.OperationalError:
        return None  # the server is down
    return dict(zip(["status", "step", "attempt", "heartbeat_at", "error"], row, strict=True))


def _restart_mid_run(server: PrivatePostgres, worker: Worker, run_id: int) -> None:
    def run() -> dict:
        return _read_run(server.url, run_id) or {}

    wait_for(lambda: run().get("step", 0) >= 20, worker, timeout=120, what="training to start")
    before = run()
    server.stop()
    time.sleep(3)  # an outage like the one reported (2.7 s), shorter than the heartbeat timeout
    server.start()
    restarted_at = timezone.now()
    # Heartbeats and steps resume on the same attempt (a frozen worker would leave both where they were).
    wait_for(lambda: run().get("heartbeat_at") is not None and run()["heartbeat_at"] > restarted_at
             and run()["step"] > before["step"], worker, timeout=30, what="progress after the restart")
    wait_for(lambda: run().get("status") not in (None, "queued", "running"), worker, timeout=180,
             what="the run to finish")
    final = run()
    assert final["status"] == RunStatus.SUCCEEDED and final["attempt"] == 1, (final, worker.tail())
    assert final["step"] == 600


class _TrainerCensus(threading.Thread):
    """Counts, every few milliseconds, the trainer processes alive on one run folder; keeps the maximum."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder, self.most, self.done = str(folder), 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            alive = 0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"trainer" in argv and b"train" in argv and self.folder.encode() in argv:
                    alive += 1
            self.most = max(self.most, alive)
            time.sleep(0.01)


def test_two_gpu_workers_never_train_one_run_folder_at_once(
    fault_env: dict[str, str], tmp_path: Path, contributor: User, maintainer: User, settings
) -> None:
    # Two hosts sharing the artifact volume: each worker in a UTS namespace of its own, so that neither
    # recognises (and kills) the other's trainer by host name. Progress writes 10 s apart leave the first
    # worker up to that long before it notices, from its fenced write, that a second attempt took the run over.
    env = {**fault_env, "COTRAIN_RUN_PROGRESS_SECONDS": "10", "COTRAIN_RUN_HEARTBEAT_TIMEOUT": "40"}
    hosts = [Worker(env, tmp_path / f"worker-{name}.log", queues="gpu", beat=False,
                    prefix=("unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', f"gpu-{name}"))
             for name in ("a", "b")]
    version = built_version(author=contributor, maintainer=maintainer)
    steps = 2000  # long enough to outlast the takeover
    run = run_start(version=version, base_checkpoint="demo", by=maintainer,
                    recipe=replace(TINY_RECIPE, max_steps=steps, checkpoint_every=25, eval_max_new_tokens=4))
    folder = run_dir_abspath(run=_run(run.pk))
    census = _TrainerCensus(folder)
    census.start()
    for host in hosts:
        host.start()
    try:
        wait_for(lambda: _run(run.pk).step >= 5, hosts[0], timeout=120, what="training to start")
        # A duplicate message while the first worker's heartbeat looks stale (a database blip, a slow host).
        late = timezone.now() - timedelta(seconds=41)
        deadline = time.monotonic() + 60
        while _run(run.pk).attempt < 2 and time.monotonic() < deadline:
            TrainingRun.objects.filter(pk=run.pk, attempt=1).update(heartbeat_at=late)
            celery_app.send_task("training.tasks.train_run", args=[run.pk])
            time.sleep(2)
        assert _run(run.pk).attempt == 2, hosts[1].tail()
        wait_for(lambda: _run(run.pk).status not in (RunStatus.QUEUED, RunStatus.RUNNING), hosts[1], timeout=400,
                 what="the run to finish")
    finally:
        census.done.set()
        for host in hosts:
            host.stop()
        connections.close_all()
    final = _run(run.pk)
    assert final.status == RunStatus.SUCCEEDED and final.attempt == 2, (final.error, final.log_tail)
    assert census.most == 1, "two trainers wrote the run folder at once"
    logged = [r["step"] for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
              if r["kind"] == "train"]
    assert logged == list(range(1, steps + 1))
    assert json.loads((folder / "result.json").read_text())["status"] == "succeeded"
