"""Launches the trainer as a subprocess and watches its run folder (docs/ARCHITECTURE.md).

No business logic and no torch here: the caller (training.services) decides what
to run and what to record; this module starts the process, tails `metrics.jsonl`,
forwards a cancel as SIGTERM and returns the exit code with `result.json`. Every
file name and exit code is `trainer.contract`'s, the one module of the trainer
that the worker imports (it needs no torch).

The trainer runs in its own process group so that a cancel reaches every rank of a
`torchrun` launch, and with a parent-death signal so that a worker killed mid-run
takes its trainer with it: the next attempt must be the only writer of the folder.
The same holds across hosts and against a worker that has not yet noticed it lost
its claim: the launcher takes an exclusive `flock` on `RUN/.trainer.lock` before it
starts the trainer, and the trainer inherits it, so the lock is free only when no
trainer of an earlier launch is alive; a second launch waits for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer import contract

_PR_SET_PDEATHSIG = 1


class FolderBusy(Exception):
    """Another launch's trainer still holds the run folder's lock; this launch did not start one."""


@dataclass
class LaunchResult:
    exit_code: int
    #: result.json's content, or None when the process wrote none (killed, crashed early).
    result: dict[str, Any] | None
    cancelled: bool = False
    metrics: list[dict[str, Any]] = field(default_factory=list)


def gpu_count() -> int:
    """GPUs this worker may use: CUDA_VISIBLE_DEVICES when set, else `nvidia-smi -L`, else 0.

    Asked without importing torch, so the worker process stays light and CUDA-free.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def train_command(*, config: Path, run_dir: Path, gpus: int, python: str = sys.executable) -> list[str]:
    """`python -m trainer train ...`, or `torchrun` with one process per GPU when there are several."""
    args = ["-m", "trainer", "train", "--config", str(config), "--output-dir", str(run_dir)]
    if gpus > 1:
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}", *args]
    return [python, *args]


def eval_command(*, base: Path, model: Path, data: Path, split: str, out: Path, max_new_tokens: int,
                 seq_len: int, python: str = sys.executable) -> list[str]:
    return [python, "-m", "trainer", "eval", "--base", str(base), "--model", str(model), "--data", str(data),
            "--split", split, "--out", str(out), "--max-new-tokens", str(max_new_tokens), "--seq-len", str(seq_len)]


def read_result(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / contract.RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def log_tail(path: Path, *, max_bytes: int = 4000) -> str:
    """The end of a log, with tqdm's carriage returns shown as lines."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - max_bytes))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(line for line in text.replace("\r", "\n").splitlines() if line.strip())


class MetricsTail:
    """Reads the complete lines appended to metrics.jsonl since the last call.

    A resumed trainer rewrites the file without the lost attempt's lines, so a
    file shorter than what was read means: start again from the top.
    """

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0
        self.inode: int | None = None

    def read(self) -> list[dict[str, Any]]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        if stat.st_size < self.offset or stat.st_ino != self.inode:
            self.offset, self.inode = 0, stat.st_ino
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a half-written last line waits for the next call
        self.offset += len(complete)
        records = []
        for line in complete.decode("utf-8", errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGKILL it when the worker process dies.
    # Not Linux (no prctl): a relaunch kills a leftover through launcher.json instead.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill_leftover(run_dir: Path) -> None:
    """Kill the process group a previous attempt on this host left running in `run_dir`."""
    try:
        info = json.loads((run_dir / contract.LAUNCHER_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    pgid = info.get("pgid")
    if info.get("host") != socket.gethostname() or not isinstance(pgid, int):
        return
    try:
        cmdline = Path(f"/proc/{pgid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return  # gone (or not Linux)
    if str(run_dir) in cmdline:  # the pid was not reused by something else
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def lock_folder(run_dir: Path, *, wait_seconds: float = 0.0, poll_seconds: float = 1.0,
                on_wait: Callable[[], None] | None = None) -> int:
    """An open descriptor holding the exclusive lock of `run_dir`, waiting up to `wait_seconds` for it.

    `on_wait()` is called every poll while another process holds it (the caller's
    heartbeat; it may raise to stop waiting). Raises `FolderBusy` after the wait.
    """
    fd = os.open(run_dir / contract.FOLDER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise FolderBusy(f"another trainer holds {run_dir / contract.FOLDER_LOCK}") from None
            if on_wait is not None:
                on_wait()
            time.sleep(poll_seconds)
    except BaseException:
        os.close(fd)
        raise


def launch(
    command: Sequence[str],
    *,
    run_dir: Path,
    on_progress: Callable[[list[dict[str, Any]]], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    poll_seconds: float = 1.0,
    cancel_grace_seconds: float = 120.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    lock_wait_seconds: float = 0.0,
) -> LaunchResult:
    """Run `command` to completion, calling `on_progress(new_metric_records)` every poll.

    `on_progress` is called every `poll_seconds` even when nothing new arrived (the
    caller's heartbeat), also while waiting up to `lock_wait_seconds` for the folder's
    lock (`FolderBusy` after that). When `should_cancel()` turns true the process group gets
    SIGTERM (the trainer finishes its step and exits 3), and SIGKILL after the grace.
    stdout and stderr are appended to RUN/trainer.log.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    _kill_leftover(run_dir)
    lock = lock_folder(run_dir, wait_seconds=lock_wait_seconds, poll_seconds=poll_seconds,
                       on_wait=None if on_progress is None else lambda: on_progress([]))
    try:
        return _launch_locked(command, run_dir=run_dir, lock=lock, on_progress=on_progress,
                              should_cancel=should_cancel, poll_seconds=poll_seconds,
                              cancel_grace_seconds=cancel_grace_seconds, env=env, cwd=cwd)
    finally:
        os.close(lock)


def _launch_locked(command: Sequence[str], *, run_dir: Path, lock: int,
                   on_progress: Callable[[list[dict[str, Any]]], None] | None,
                   should_cancel: Callable[[], bool] | None, poll_seconds: float, cancel_grace_seconds: float,
                   env: dict[str, str] | None, cwd: Path | None) -> LaunchResult:
    # result.json must describe this launch: a crash before the trainer writes one
    # must not be mistaken for the previous attempt's outcome.
    (run_dir / contract.RESULT).unlink(missing_ok=True)
    tail = MetricsTail(run_dir / contract.METRICS)
    seen: list[dict[str, Any]] = []
    with (run_dir / contract.TRAINER_LOG).open("ab") as log:
        log.write(f"\n$ {' '.join(command)}\n".encode())
        log.flush()
        # The trainer inherits the lock: should it outlive this process (no parent-death
        # signal off Linux), the folder stays locked until it exits.
        proc = subprocess.Popen(
            list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
            env={**os.environ, **(env or {})}, start_new_session=True, preexec_fn=_die_with_parent,
            pass_fds=(lock,),
        )
        (run_dir / contract.LAUNCHER_RECORD).write_text(json.dumps({"host": socket.gethostname(), "pgid": proc.pid}))
        cancel_sent_at: float | None = None
        try:
            while True:
                exit_code = _wait(proc, poll_seconds)
                new = tail.read()
                seen.extend(new)
                if on_progress is not None:
                    on_progress(new)
                if exit_code is not None:
                    break
                if cancel_sent_at is None and should_cancel is not None and should_cancel():
                    _signal_group(proc, signal.SIGTERM)
                    cancel_sent_at = time.monotonic()
                elif cancel_sent_at is not None and time.monotonic() - cancel_sent_at > cancel_grace_seconds:
                    _signal_group(proc, signal.SIGKILL)
        except BaseException:
            # The caller gave up (lost its claim, was interrupted): no trainer may outlive it.
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
            raise
    result = read_result(run_dir)
    cancelled = cancel_sent_at is not None and (exit_code == contract.Exit.CANCELLED or exit_code < 0
                                                or (result or {}).get("status") == contract.Status.CANCELLED)
    return LaunchResult(exit_code=exit_code, result=result, cancelled=cancelled, metrics=seen)


def _wait(proc: subprocess.Popen[bytes], seconds: float) -> int | None:
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
