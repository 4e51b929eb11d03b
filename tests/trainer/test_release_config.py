"""Every released `config.json` carries each key the public Yuan2 reference code reads.

The public `yuan_hf_model.py` reads `config.causal_mask`, `config.use_flash_attention`,
`config.eod_token`, `config.sep_token`, `config.reset_attention_mask`,
`config.reset_position_ids`, `config.use_loss_mask` and `config.max_position_embeddings`
without a default, and its `configuration_yuan.py` defaults none of them: a release
that lacks one fails to load there with an AttributeError. A release built from a
preset must get them with the values of the real Yuan2-2B-hf `config.json`; a
release of a real checkpoint must keep the values that checkpoint brought.

Releases go through the project's export path, `trainer.export.export_checkpoint`,
on a hand-made full fine-tuning checkpoint (`model/` plus `config.yaml`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from test_model_parity import TINY_SIZES, yuan2_2b_hf_config
from tiny_models import random_model

from trainer.checkpoint import load_model, save_model
from trainer.config import REFERENCE_KEYS, YuanConfig, preset
from trainer.export import export_checkpoint
from trainer.runconfig import RunConfig
from trainer.tokenizer import byte_tokenizer

#: The keys read without a default, with the type and value of the real Yuan2-2B-hf
#: `config.json` (None: the value depends on the model; the test gives it).
REAL_VALUES: dict[str, tuple[type, Any]] = {
    "max_position_embeddings": (int, None),
    "causal_mask": (bool, True),
    "use_flash_attention": (bool, False),
    "eod_token": (int, None),
    "sep_token": (int, None),
    "reset_attention_mask": (bool, True),
    "reset_position_ids": (bool, True),
    "use_loss_mask": (bool, False),
}


def test_reference_key_list_is_complete() -> None:
    assert set(REFERENCE_KEYS) == set(REAL_VALUES)
    real = yuan2_2b_hf_config()
    assert {k: real[k] for k in REAL_VALUES if REAL_VALUES[k][1] is not None} == {
        k: v for k, (_, v) in REAL_VALUES.items() if v is not None}


def run_checkpoint(tmp_path: Path, model_folder: Path) -> Path:
    """A full fine-tuning checkpoint folder around `model_folder` (moved to `<ckpt>/model`)."""
    ckpt = tmp_path / "run" / "checkpoints" / "step_0000001"
    ckpt.mkdir(parents=True)
    model_folder.rename(ckpt / "model")
    data = tmp_path / "data"
    data.mkdir()
    cfg = RunConfig.from_dict({
        "model": {"path": str(ckpt / "model")},
        "data": {"path": str(data)},
        "output_dir": str(tmp_path / "run"),
        "train": {"method": "full"},
        "export": False,
    })
    cfg.save(ckpt / "config.yaml")
    return ckpt


def exported_config(tmp_path: Path, model_folder: Path) -> dict[str, Any]:
    result = export_checkpoint(run_checkpoint(tmp_path, model_folder), tmp_path / "export")
    merged = Path(result["outputs"]["merged"])
    assert (merged / "yuan_lfa.py").is_file()
    return json.loads((merged / "config.json").read_text(encoding="utf-8"))


def assert_reference_keys(written: dict[str, Any], **model_values: Any) -> None:
    for key, (kind, value) in REAL_VALUES.items():
        assert key in written, f"config.json lacks {key!r}, which the reference reads without a default"
        assert type(written[key]) is kind, f"{key}: {written[key]!r} is not {kind.__name__}"
        expected = model_values[key] if value is None else value
        assert written[key] == expected, f"{key}: {written[key]!r} != {expected!r}"


def test_preset_release_has_every_reference_key(tmp_path: Path) -> None:
    config = preset("yuan2_tiny")
    folder = tmp_path / "base"
    save_model(random_model(config, seed=1), folder)
    byte_tokenizer().save(folder)
    written = exported_config(tmp_path, folder)
    assert_reference_keys(written, max_position_embeddings=config.max_position_embeddings,
                          eod_token=config.eod_token_id, sep_token=config.sep_token_id)
    assert written["eod_token_id"] == config.eod_token_id and written["sep_token_id"] == config.sep_token_id
    # What our loader reads back is the model that was exported.
    assert YuanConfig.from_dict(written).reset_attention_mask is True


def write_real_checkpoint(folder: Path, raw: dict[str, Any], seed: int) -> None:
    """A folder as the public Yuan2-2B-hf release lays it out: its config.json, bf16 weights."""
    model = random_model(YuanConfig.from_dict(raw), seed=seed)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(raw, indent=2), encoding="utf-8")
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    byte_tokenizer().save(folder)


def assert_real_values_survive(written: dict[str, Any], raw: dict[str, Any]) -> None:
    # Export points auto_map at our remote code; every other key keeps the file's value.
    kept = {k: v for k, v in raw.items() if k != "auto_map"}
    assert {k: written.get(k) for k in kept} == kept
    assert written["auto_map"]["AutoModelForCausalLM"] == "modeling_yuan.YuanForCausalLM"


def test_real_config_keys_survive_release_tiny(tmp_path: Path) -> None:
    """Real key set, tiny sizes, and flags off their defaults: the file's values win."""
    raw = yuan2_2b_hf_config(**TINY_SIZES, torch_dtype="float32", use_flash_attention=True, causal_mask=False,
                             use_loss_mask=True, reset_position_ids=False, reset_attention_mask=False)
    write_real_checkpoint(tmp_path / "base", raw, seed=2)
    written = exported_config(tmp_path, tmp_path / "base")
    assert_real_values_survive(written, raw)
    assert set(REFERENCE_KEYS) <= set(written)


def test_release_of_config_without_reference_keys(tmp_path: Path) -> None:
    """A checkpoint whose config.json lacks the reference's keys gets the real Yuan2-2B-hf values."""
    raw = {k: v for k, v in yuan2_2b_hf_config(**TINY_SIZES, torch_dtype="float32").items()
           if k not in REAL_VALUES or k == "max_position_embeddings"}
    write_real_checkpoint(tmp_path / "base", raw, seed=3)
    written = exported_config(tmp_path, tmp_path / "base")
    assert_reference_keys(written, max_position_embeddings=raw["max_position_embeddings"],
                          eod_token=raw["eod_token_id"], sep_token=raw["sep_token_id"])


@pytest.mark.slow
def test_real_yuan2_2b_config_release(tmp_path: Path) -> None:
    """The real Yuan2-2B-hf config.json (2 layers instead of 24) through the export path."""
    raw = yuan2_2b_hf_config(num_hidden_layers=2)
    write_real_checkpoint(tmp_path / "base", raw, seed=4)
    written = exported_config(tmp_path, tmp_path / "base")
    assert_reference_keys(written, max_position_embeddings=8192, eod_token=77185, sep_token=77187)
    assert_real_values_survive(written, raw)
    # The release holds the same (bf16) weights and computes what the source computes.
    ids = torch.tensor([[5, 77187, 900, 77185, 31, 7]])
    release = load_model(tmp_path / "export" / "merged")
    source = load_model(tmp_path / "run" / "checkpoints" / "step_0000001" / "model")
    with torch.no_grad():
        assert torch.equal(release(ids).logits, source(ids).logits)
