"""A local Celery worker subprocess (both queues, with beat) for the embedded default.

`manage.py demo` starts one for as long as it runs: the same `celery worker` a
deployment runs, not eager mode, so messages really cross the broker (kombu's
filesystem transport under var/) and the trainer really runs as the worker's child.
No business logic here: start, check, stop, read the log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from worker.celery_app import DEFAULT_QUEUE, GPU_QUEUE

REPO_ROOT = Path(__file__).resolve().parent.parent


class EmbeddedWorker:
    """`celery -A worker.celery_app worker -Q default,gpu -c 1 -B` in its own process group."""

    def __init__(self, *, var_dir: Path, name: str = "embedded", env: dict[str, str] | None = None) -> None:
        self.var_dir = var_dir
        self.log = var_dir / f"{name}-worker.log"
        self.name = name
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            "-Q", f"{DEFAULT_QUEUE},{GPU_QUEUE}", "-c", "1", "-B",
            "-s", str(self.var_dir / f"{self.name}-beat-schedule"), "-l", "info",
            "--without-gossip", "--without-mingle", "-n", f"{self.name}-{os.getpid()}@%h",
        ]  # fmt: skip

    def start(self) -> EmbeddedWorker:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            # A new session: Ctrl-C in the terminal reaches the demo, which stops the
            # worker in order, instead of interrupting a task halfway.
            self.proc = subprocess.Popen(self.command(), cwd=REPO_ROOT, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, grace_s: float = 10.0) -> None:
        """SIGTERM (Celery's warm shutdown), then SIGKILL the whole group if a task holds it past `grace_s`.

        A trainer killed this way leaves its run `running`; the sweeper of the next
        worker queues it again once its heartbeat is stale, and it resumes.
        """
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        # The pool and beat children share the group; none may outlive the main process.
        self._signal(signal.SIGKILL)
        self.proc = None

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def log_tail(self, *, max_chars: int = 3000) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-max_chars:]
        except OSError:
            return ""

    def wait_ready(self, *, timeout: float = 60.0) -> bool:
        """True once the worker logged that it is ready to take messages (False if it died or timed out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            with self.log.open("rb") as handle:
                handle.seek(self._log_start)
                if b" ready." in handle.read():
                    return True
            time.sleep(0.2)
        return False
