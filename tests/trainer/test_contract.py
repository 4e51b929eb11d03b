"""trainer.contract ties the run folder's two sides: the worker launches the trainer as the platform does,
and each side writes and reads exactly the files and exit codes the contract names."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_train import CASES, make_config

from trainer import contract
from trainer.checkpoint import save_model
from trainer.config import preset
from trainer.data import DEFAULT_SPLIT, single_split
from trainer.model import YuanForCausalLM
from trainer.runconfig import RunConfig
from trainer.tokenizer import byte_tokenizer
from worker import launcher

REPO = Path(__file__).resolve().parents[2]
#: Every name the contract defines: file and folder names, and the tuples grouping them.
NAMES = {value for key, value in vars(contract).items() if key.isupper() and isinstance(value, str)}
#: The names that are files (a dot in them): never spelled out anywhere but in the contract.
FILE_NAMES = {name for name in NAMES if "." in name}
#: Modules on both sides of the boundary: the trainer, the worker, and the platform code that reads run folders.
BOTH_SIDES = [*(REPO / "trainer").rglob("*.py"), *(REPO / "worker").rglob("*.py"),
              *(REPO / "platform" / "training" / "services").glob("*.py"),
              REPO / "platform" / "training" / "selectors.py", REPO / "platform" / "releases" / "services.py"]


def _launch(command: list[str], run_dir: Path, **kwargs) -> launcher.LaunchResult:
    return launcher.launch(command, run_dir=run_dir, cwd=REPO, poll_seconds=0.1, **kwargs)


def _platform_inputs(run_dir: Path, cfg: RunConfig) -> dict[str, bytes]:
    """The inputs the platform writes before a launch (training.services.runs.run_folder_write), as bytes."""
    run_dir.mkdir(parents=True)
    (run_dir / contract.RUN_CONFIG).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
    (run_dir / contract.PLATFORM_RECORD).write_text(json.dumps({"run_id": 1, "attempt": 1}) + "\n")
    return {name: (run_dir / name).read_bytes() for name in contract.INPUTS}


def _tiny_checkpoint(folder: Path) -> Path:
    save_model(YuanForCausalLM(preset("yuan2_tiny")), folder)
    byte_tokenizer().save(folder)
    return folder


def _write_jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": f"r{i}", "prompt": p, "response": r, "source": "test"},
                                       ensure_ascii=False) + "\n" for i, (p, r) in enumerate(rows)), encoding="utf-8")
    return path


def test_the_contract_needs_nothing_but_the_standard_library() -> None:
    tree = ast.parse(Path(contract.__file__).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert imported <= {*sys.stdlib_module_names, "__future__"}
    # And at run time: the package around it loads torch only when a torch-side name is used.
    code = ("import sys, trainer.contract, worker.launcher; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'trainer')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "['trainer', 'trainer.contract']"


def test_no_module_on_either_side_spells_out_a_contract_file_name() -> None:
    spelled: dict[str, set[str]] = {}
    for path in BOTH_SIDES:
        if path == Path(contract.__file__):
            continue
        found = {node.value for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in FILE_NAMES}
        if found:
            spelled[str(path.relative_to(REPO))] = found
    assert not spelled, "take these names from trainer.contract"
    # The launcher's own constants went to the contract: nothing left to drift apart.
    assert not [name for name in vars(launcher) if name.startswith("EXIT_") or name.endswith("_NAME")]


def test_inputs_and_outputs_never_share_a_name_and_the_docs_list_every_one() -> None:
    groups = (contract.INPUTS, contract.LAUNCHER_FILES, contract.TRAIN_OUTPUTS, contract.COMPARISON_OUTPUTS)
    every = [name for group in groups for name in group]
    assert len(every) == len(set(every))
    assert [(e.name, e.value) for e in contract.Exit] == [("SUCCEEDED", 0), ("FAILED", 1), ("USAGE", 2),
                                                          ("CANCELLED", 3)]
    assert [contract.exit_for(s) for s in (*contract.Status, "running")] == [0, 1, 3, 1]
    docs = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Run folder contract"):]
    section = section[: section.index("\n## ", 1)]
    assert NAMES - set(re.findall(r"`([^`/ ]+)/?", section)) == set()
    assert "trainer/contract.py" in section


def test_a_launched_run_writes_the_contract_outputs_and_leaves_the_inputs_alone(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = make_config(tmp_path, "run", train={"max_steps": 2}, eval={"generate": True, "max_new_tokens": 4},
                      export=True)
    inputs = _platform_inputs(run_dir, cfg)
    command = launcher.train_command(config=run_dir / contract.RUN_CONFIG, run_dir=run_dir, gpus=0)
    outcome = _launch(command, run_dir)
    assert outcome.exit_code == contract.Exit.SUCCEEDED, launcher.log_tail(run_dir / contract.TRAINER_LOG)
    assert outcome.result is not None and outcome.result["status"] == contract.Status.SUCCEEDED
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        {*contract.INPUTS, *contract.LAUNCHER_FILES, *contract.TRAIN_OUTPUTS})
    assert {name: (run_dir / name).read_bytes() for name in contract.INPUTS} == inputs
    assert RunConfig.from_yaml(run_dir / contract.RESOLVED_CONFIG) == cfg
    assert [r["step"] for r in outcome.metrics if r["kind"] == "train"] == [1, 2]
    assert (run_dir / contract.EXPORT / contract.EXPORT_MERGED / "SHA256SUMS").is_file()
    assert any((run_dir / contract.CHECKPOINTS).glob(f"step_*/{contract.CHECKPOINT_COMPLETE}"))


def test_a_refused_config_exits_usage_with_the_reason_in_the_result(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / contract.RUN_CONFIG).write_text("model: {preset: yuan2_tiny}\ndata: {path: x}\ntrian: {}\n")
    outcome = _launch(launcher.train_command(config=run_dir / contract.RUN_CONFIG, run_dir=run_dir, gpus=0), run_dir)
    assert outcome.exit_code == contract.Exit.USAGE and not outcome.cancelled
    assert outcome.result is not None and outcome.result["status"] == contract.Status.FAILED
    assert "unknown key trian" in outcome.result["error"]


@pytest.mark.slow
def test_a_cancel_through_the_launcher_ends_the_trainer_with_the_cancel_code(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = make_config(tmp_path, "run", train={"max_steps": 100000, "warmup_steps": 0}, checkpoint={"every_steps": 0})
    _platform_inputs(run_dir, cfg)
    seen: list[dict] = []
    outcome = _launch(launcher.train_command(config=run_dir / contract.RUN_CONFIG, run_dir=run_dir, gpus=0), run_dir,
                      on_progress=seen.extend, should_cancel=lambda: len(seen) >= 2)
    assert outcome.exit_code == contract.Exit.CANCELLED and outcome.cancelled
    assert outcome.result is not None and outcome.result["status"] == contract.Status.CANCELLED


def test_eval_scores_a_single_file_whole_whatever_split_is_asked_for(tmp_path: Path) -> None:
    model = _tiny_checkpoint(tmp_path / "model")
    single = _write_jsonl(tmp_path / "general.jsonl", CASES[:3])
    folder = tmp_path / "cases"
    _write_jsonl(folder / "train.jsonl", CASES)
    _write_jsonl(folder / "eval.jsonl", CASES[:2])
    assert single_split(single) == DEFAULT_SPLIT and single_split(folder) is None
    for data, n in ((single, 3), (folder, 2)):
        out = tmp_path / "eval" / data.stem
        command = launcher.eval_command(base=model, model=model, data=data, split="eval", out=out, max_new_tokens=2,
                                        seq_len=64)
        outcome = _launch(command, out)
        assert outcome.exit_code == contract.Exit.SUCCEEDED, launcher.log_tail(out / contract.TRAINER_LOG)
        assert sorted(p.name for p in out.iterdir()) == sorted({*contract.COMPARISON_OUTPUTS, *contract.LAUNCHER_FILES})
        assert json.loads((out / contract.COMPARISON).read_text(encoding="utf-8"))["summary"]["n"] == n
    # A split that named data lacks is still refused.
    out = tmp_path / "eval" / "missing"
    command = launcher.eval_command(base=model, model=model, data=folder, split="test", out=out, max_new_tokens=2,
                                    seq_len=64)
    outcome = _launch(command, out)
    assert outcome.exit_code == contract.Exit.USAGE
    assert "no split 'test'" in launcher.log_tail(out / contract.TRAINER_LOG)
