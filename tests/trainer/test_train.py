"""The fine-tuning recipe end to end on a tiny model: loss, LoRA, resume, export, CLI, torchrun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.checkpoint import load_model, verify_sha256sums
from trainer.model import YuanForCausalLM
from trainer.runconfig import RunConfig
from trainer.train import latest_checkpoint, run

REPO = Path(__file__).resolve().parents[2]

CASES = [
    ("把下面的日期改写成 ISO 格式：2023年12月6日", "2023-12-06"),
    ("从句子中提取人名：张伟和李娜昨天去了济南。", "张伟、李娜"),
    ("计算：7 × 8 = ?", "56"),
    ("Translate to English: 我们明天开会。", "We have a meeting tomorrow."),
    ("Write SQL: count rows in table users", "SELECT COUNT(*) FROM users;"),
    ("判断情感（正面/负面）：客服半天不回复。", "负面"),
]


def write_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", CASES), ("eval", CASES[:2])):
        with (folder / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for i, (prompt, response) in enumerate(rows):
                fh.write(json.dumps({"id": f"{split}-{i}", "prompt": prompt, "response": response,
                                     "source": "test"}, ensure_ascii=False) + "\n")
    return folder


def make_config(tmp_path: Path, name: str, **overrides: dict) -> RunConfig:
    raw = {
        "model": {"preset": "yuan2_tiny", "init_seed": 0},
        "data": {"path": str(write_dataset(tmp_path / "data")), "seq_len": 96},
        "output_dir": str(tmp_path / name),
        "train": {"method": "full", "max_steps": 6, "micro_batch_size": 2, "lr": 3e-3, "warmup_steps": 1,
                  "seed": 7},
        "checkpoint": {"every_steps": 2, "keep_last": 5},
        "eval": {"generate": False},
        "export": False,
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            raw[section] = {**raw.get(section, {}), **values}
        else:
            raw[section] = values
    return RunConfig.from_dict(raw)


def train_losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"}


def test_short_run_lowers_loss_and_writes_run_folder(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, "run", train={"max_steps": 30})
    result = run(cfg)
    assert result["status"] == "succeeded", result.get("error")
    losses = train_losses(Path(cfg.output_dir))
    assert sorted(losses) == list(range(1, 31))
    assert losses[30] < 0.6 * losses[1]
    record = json.loads((Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()[0])
    assert {"step", "loss", "lr", "grad_norm", "tokens_per_s", "eta_s"} <= set(record)
    saved = json.loads((Path(cfg.output_dir) / "result.json").read_text())
    assert saved["status"] == "succeeded" and saved["eval_loss"] is not None
    assert saved["data"]["used"] == len(CASES)
    # The resolved config travels with every checkpoint and reloads to the same config.
    ckpt = latest_checkpoint(Path(cfg.output_dir))
    assert RunConfig.from_yaml(ckpt / "config.yaml") == cfg


LORA_RECIPE = {"train": {"method": "lora", "lr": 1e-2}, "lora": {"r": 4, "alpha": 8, "targets": [
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "conv1", "conv2"]}}


@pytest.mark.parametrize("method", ["full", "lora", "lora_fused"])
def test_resume_after_crash_gives_the_uninterrupted_losses(tmp_path: Path, method: str) -> None:
    # lora_fused: the fused layout (what one CUDA process gets), resumed with its optimizer state.
    recipe = {"full": {}, "lora": LORA_RECIPE,
              "lora_fused": {**LORA_RECIPE, "lora": {**LORA_RECIPE["lora"], "fused": True}}}[method]
    full = make_config(tmp_path, "full", **recipe)
    assert run(full)["status"] == "succeeded"
    expected = train_losses(Path(full.output_dir))

    # A crash after step 2: the run folder as it was then (checkpoint 2, metrics to step 3).
    crashed = Path(tmp_path / "crashed")
    shutil.copytree(full.output_dir, crashed)
    for ckpt in (crashed / "checkpoints").glob("step_*"):
        if ckpt.name != "step_0000002":
            shutil.rmtree(ckpt)
    (crashed / "result.json").unlink()
    # A checkpoint being written when the process died has no COMPLETE marker: ignored.
    partial = crashed / "checkpoints" / "step_0000004.tmp"
    partial.mkdir()
    lines = (crashed / "metrics.jsonl").read_text().splitlines()[:3]
    (crashed / "metrics.jsonl").write_text("\n".join(lines) + "\n")

    resumed = make_config(tmp_path, "crashed", **recipe)
    result = run(resumed)
    assert result["status"] == "succeeded"
    assert result["resumed_from_step"] == 2
    got = train_losses(crashed)
    assert sorted(got) == sorted(expected)  # the lost attempt's step-3 line was replaced
    for step in range(3, 7):
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6), step

    # The same folder with another recipe is refused rather than silently mixed.
    changed = make_config(tmp_path, "crashed", **{**recipe, "train": {**recipe.get("train", {}), "lr": 1e-3}})
    result = run(changed)
    assert result["status"] == "failed" and "train.lr" in result["error"]


def test_lora_trains_only_adapters_and_merge_preserves_outputs(tmp_path: Path) -> None:
    from peft import PeftModel

    cfg = make_config(tmp_path, "lora", train={"method": "lora", "max_steps": 8, "lr": 1e-2},
                      lora={"r": 4, "alpha": 8, "targets": ["q_proj", "v_proj", "up_proj", "conv1", "conv2"]},
                      export=True)
    result = run(cfg)
    assert result["status"] == "succeeded", result.get("error")
    export = Path(cfg.output_dir) / "export"
    assert verify_sha256sums(export / "adapter") == []
    assert verify_sha256sums(export / "merged") == []

    base = YuanForCausalLM(load_model(export / "merged").config)
    base.init_weights(0)
    base.eval()
    peft_model = PeftModel.from_pretrained(base, str(export / "adapter")).eval()
    merged = load_model(export / "merged")
    ids = torch.tensor([[5, 40, 300, 257, 77, 90, 12]])
    with torch.no_grad():
        adapted = peft_model(input_ids=ids).logits
        assert torch.allclose(merged(ids).logits, adapted, atol=1e-4, rtol=1e-4)
        # The adapter changed the outputs (it trained), and it adapted the LFA convolutions.
        plain = YuanForCausalLM(merged.config)
        plain.init_weights(0)
        assert not torch.allclose(plain.eval()(ids).logits, adapted, atol=1e-4)
    merged_sd, base_sd = merged.state_dict(), plain.state_dict()
    changed = {k for k in base_sd if not torch.equal(merged_sd[k], base_sd[k])}
    assert any("lf_gate.conv1" in k for k in changed) and any("lf_gate.conv2" in k for k in changed)
    assert all(k.split(".")[-2] in {"q_proj", "v_proj", "up_proj", "conv1", "conv2"} for k in changed), changed


def test_unknown_and_mistyped_config_keys_are_refused(tmp_path: Path) -> None:
    from trainer.config import ConfigError

    with pytest.raises(ConfigError, match=r"unknown key train\.learning_rate"):
        make_config(tmp_path, "x", train={"learning_rate": 1.0})
    with pytest.raises(ConfigError, match=r"train\.max_steps: expected an integer"):
        make_config(tmp_path, "x", train={"max_steps": "ten"})
    with pytest.raises(ConfigError, match=r"lora\.targets"):
        make_config(tmp_path, "x", lora={"targets": ["qproj"]})
    with pytest.raises(ConfigError, match=r"exactly one of model\.path or model\.preset"):
        make_config(tmp_path, "x", model={"path": "/nowhere"})


def cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_cli_failure_exits_nonzero_with_reason_in_result(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, "bad")
    cfg.data.path = str(tmp_path / "missing-data")
    cfg.save(tmp_path / "bad.yaml")
    proc = cli("train", "--config", str(tmp_path / "bad.yaml"))
    assert proc.returncode == 1
    result = json.loads((tmp_path / "bad" / "result.json").read_text())
    assert result["status"] == "failed" and "missing-data" in result["error"]

    (tmp_path / "typo.yaml").write_text("model: {preset: yuan2_tiny}\ndata: {path: x}\ntrian: {}\n")
    proc = cli("train", "--config", str(tmp_path / "typo.yaml"), "--output-dir", str(tmp_path / "typo"))
    assert proc.returncode == 2 and "unknown key trian" in proc.stderr
    assert json.loads((tmp_path / "typo" / "result.json").read_text())["status"] == "failed"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lora"])
def test_torchrun_two_processes_match_one_process(tmp_path: Path, method: str) -> None:
    lora = {"r": 4, "alpha": 8, "targets": ["q_proj", "v_proj", "conv1"]}
    one = make_config(tmp_path, "one", train={"method": method, "micro_batch_size": 2, "max_steps": 4}, lora=lora)
    two = make_config(tmp_path, "two", train={"method": method, "micro_batch_size": 1, "max_steps": 4}, lora=lora)
    assert run(one)["status"] == "succeeded"
    two.save(tmp_path / "two.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "trainer", "train", "--config", str(tmp_path / "two.yaml")],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    clues = [line for line in proc.stderr.splitlines() if any(w in line for w in ("Error", "terminate", "what()"))]
    assert proc.returncode == 0, "\n".join(clues[:20]) + "\n" + proc.stderr[-2000:]
    result = json.loads((tmp_path / "two" / "result.json").read_text())
    assert result["status"] == "succeeded" and result["world_size"] == 2
    a, b = train_losses(tmp_path / "one"), train_losses(tmp_path / "two")
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-4), step
    # The sharded run's final weights (or adapter) equal the single-process run's.
    if method == "lora":
        from safetensors.torch import load_file

        wa, wb = (load_file(str(latest_checkpoint(tmp_path / d) / "adapter" / "adapter_model.safetensors"))
                  for d in ("one", "two"))
    else:
        wa = load_model(latest_checkpoint(tmp_path / "one") / "model").state_dict()
        wb = load_model(latest_checkpoint(tmp_path / "two") / "model").state_dict()
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-5, rtol=1e-4), name


def test_accumulation_and_activation_checkpointing_do_not_change_the_step(tmp_path: Path) -> None:
    plain = make_config(tmp_path, "plain", train={"micro_batch_size": 4, "max_steps": 3})
    accum = make_config(tmp_path, "accum", train={"micro_batch_size": 1, "grad_accum": 4, "max_steps": 3,
                                                   "activation_checkpointing": True})
    assert run(plain)["status"] == run(accum)["status"] == "succeeded"
    a, b = train_losses(tmp_path / "plain"), train_losses(tmp_path / "accum")
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5), step


@pytest.mark.slow
def test_sigterm_cancels_the_run_between_steps(tmp_path: Path) -> None:
    import signal
    import time

    cfg = make_config(tmp_path, "cancel", train={"max_steps": 100000, "warmup_steps": 0},
                      checkpoint={"every_steps": 0})
    cfg.save(tmp_path / "cancel.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "trainer", "train", "--config", str(tmp_path / "cancel.yaml")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "cancel" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err[-2000:]
    result = json.loads((tmp_path / "cancel" / "result.json").read_text())
    assert result["status"] == "cancelled"
    assert len(train_losses(tmp_path / "cancel")) < 100000
