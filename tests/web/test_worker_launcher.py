"""worker.launcher: the command it builds, metrics tailing, cancel as SIGTERM, exit codes and result.json."""

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
from trainer import contract

from worker import launcher

# A stand-in trainer honouring the run folder contract: metrics every step, result.json
# at the end, SIGTERM finishes the step in hand and exits 3.
FAKE_TRAINER = textwrap.dedent(f"""
    import json, os, signal, sys, time
    RESULT, METRICS = {contract.RESULT!r}, {contract.METRICS!r}
    run = sys.argv[1]; steps = int(sys.argv[2]); delay = float(sys.argv[3])
    stop = {{"flag": False}}
    signal.signal(signal.SIGTERM, lambda *a: stop.update(flag=True))
    def result(status):
        with open(os.path.join(run, RESULT + ".tmp"), "w") as fh:
            json.dump({{"status": status, "steps": steps}}, fh)
        os.replace(os.path.join(run, RESULT + ".tmp"), os.path.join(run, RESULT))
    for step in range(1, steps + 1):
        if stop["flag"]:
            result("cancelled"); print("cancelled at", step, file=sys.stderr); sys.exit({int(contract.Exit.CANCELLED)})
        time.sleep(delay)
        with open(os.path.join(run, METRICS), "a") as fh:
            fh.write(json.dumps({{"kind": "train", "step": step, "loss": 5.0 - step / 10,
                                  "eta_s": (steps - step) * delay, "total_steps": steps}}) + "\\n")
        print(f"step {{step}}", flush=True)
    result("succeeded")
""")


def _fake(tmp_path: Path, steps: int, delay: float) -> list[str]:
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    return [sys.executable, str(script), str(tmp_path / "run"), str(steps), str(delay)]


def test_train_command_uses_torchrun_only_for_several_gpus(tmp_path: Path) -> None:
    one = launcher.train_command(config=tmp_path / "c.yaml", run_dir=tmp_path / "r", gpus=1, python="py")
    assert one == ["py", "-m", "trainer", "train", "--config", str(tmp_path / "c.yaml"),
                   "--output-dir", str(tmp_path / "r")]
    four = launcher.train_command(config=tmp_path / "c.yaml", run_dir=tmp_path / "r", gpus=4, python="py")
    assert four[:5] == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4"]
    assert four[5:] == one[1:]


@pytest.mark.parametrize(("visible", "count"), [("0,1,2", 3), ("", 0), ("-1", 0), ("GPU-1a2b", 1)])
def test_gpu_count_reads_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch, visible: str, count: int) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert launcher.gpu_count() == count


def test_launch_streams_metrics_and_returns_the_result(tmp_path: Path) -> None:
    batches: list[list[dict]] = []
    outcome = launcher.launch(_fake(tmp_path, steps=4, delay=0.05), run_dir=tmp_path / "run",
                              on_progress=batches.append, poll_seconds=0.05)
    assert outcome.exit_code == 0 and outcome.result == {"status": "succeeded", "steps": 4} and not outcome.cancelled
    assert [r["step"] for r in outcome.metrics] == [1, 2, 3, 4]
    assert [r["step"] for batch in batches for r in batch] == [1, 2, 3, 4]
    assert "step 4" in launcher.log_tail(tmp_path / "run" / contract.TRAINER_LOG)


def test_cancel_sends_sigterm_and_the_trainer_stops_after_its_step(tmp_path: Path) -> None:
    seen: list[dict] = []
    outcome = launcher.launch(_fake(tmp_path, steps=200, delay=0.05), run_dir=tmp_path / "run",
                              on_progress=seen.extend, should_cancel=lambda: len(seen) >= 3, poll_seconds=0.05)
    assert outcome.exit_code == contract.Exit.CANCELLED and outcome.cancelled
    assert outcome.result == {"status": "cancelled", "steps": 200}
    assert 3 <= len(outcome.metrics) < 200


def test_a_stale_result_is_not_read_as_this_launch(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / contract.RESULT).write_text(json.dumps({"status": "succeeded"}))
    outcome = launcher.launch([sys.executable, "-c", "import sys; sys.exit(1)"], run_dir=run, poll_seconds=0.05)
    assert outcome.exit_code == 1 and outcome.result is None


def test_an_exception_in_the_caller_kills_the_trainer(tmp_path: Path) -> None:
    def boom(records: list[dict]) -> None:
        if records:
            raise RuntimeError("claim lost")

    with pytest.raises(RuntimeError):
        launcher.launch(_fake(tmp_path, steps=200, delay=0.05), run_dir=tmp_path / "run", on_progress=boom,
                        poll_seconds=0.05)
    pgid = json.loads((tmp_path / "run" / contract.LAUNCHER_RECORD).read_text())["pgid"]
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_metrics_tail_restarts_when_a_resumed_trainer_rewrites_the_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    tail = launcher.MetricsTail(path)
    assert tail.read() == []
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"ste')
    assert [r["step"] for r in tail.read()] == [1, 2, 3]
    path.write_text('{"step": 1}\n')  # the resumed attempt dropped steps after its checkpoint
    assert [r["step"] for r in tail.read()] == [1]
    with path.open("a") as fh:
        fh.write('{"step": 2}\n')
    assert [r["step"] for r in tail.read()] == [2]


def test_trainer_dies_with_its_launcher(tmp_path: Path) -> None:
    # The launcher in a child process that we SIGKILL, as when a worker dies mid-run.
    code = (f"import sys; sys.path.insert(0, {str(Path(launcher.__file__).parents[1])!r}); "
            "from pathlib import Path; from worker import launcher; "
            f"launcher.launch({_fake(tmp_path, steps=1000, delay=0.05)!r}, run_dir=Path({str(tmp_path / 'run')!r}))")
    import subprocess

    parent = subprocess.Popen([sys.executable, "-c", code])
    pid_file = tmp_path / "run" / contract.LAUNCHER_RECORD
    deadline = time.time() + 20
    while not (pid_file.exists() and (tmp_path / "run" / contract.METRICS).exists()) and time.time() < deadline:
        time.sleep(0.05)
    pgid = json.loads(pid_file.read_text())["pgid"]
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
