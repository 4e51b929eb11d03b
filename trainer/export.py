"""Export a training checkpoint: the LoRA adapter and a merged full checkpoint, each with SHA256SUMS.

The merged folder is a complete HF Yuan2 checkpoint: config.json (with
`auto_map`), safetensors weights, tokenizer files and our own remote code, so it
loads in `trainer.load_model`, in the public reference code and through
`transformers.AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True)`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from . import contract
from .checkpoint import load_model, save_model, sha256_file, write_sha256sums
from .hf import write_remote_code
from .runconfig import RunConfig
from .tokenizer import load_tokenizer


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Write `out_dir/merged` (and `out_dir/adapter` for LoRA); returns paths and checksums."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    cfg = RunConfig.from_yaml(checkpoint / "config.yaml")
    merged, adapter = out_dir / contract.EXPORT_MERGED, out_dir / contract.EXPORT_ADAPTER
    for folder in (merged, adapter):
        shutil.rmtree(folder, ignore_errors=True)
    outputs: dict[str, Any] = {}
    if cfg.train.method == "lora":
        model, tokenizer = _merged_lora(cfg, checkpoint, adapter)
        write_sha256sums(adapter)
        outputs["adapter"] = str(adapter)
    else:
        model = load_model(checkpoint / "model", dtype=torch.float32)
        tokenizer = load_tokenizer(checkpoint / "model")
    save_model(model, merged, dtype=_release_dtype(model))
    tokenizer.save(merged)
    write_remote_code(merged)
    write_sha256sums(merged)
    outputs["merged"] = str(merged)
    outputs["checksums"] = {
        name: {p.relative_to(out_dir).as_posix(): sha256_file(p) for p in sorted(Path(path).rglob("*"))
               if p.is_file()}
        for name, path in outputs.items() if name in ("merged", "adapter")
    }
    return {"outputs": outputs}


def _merged_lora(cfg: RunConfig, checkpoint: Path, adapter_out: Path):  # -> (YuanForCausalLM, Tokenizer)
    from .lora import load_adapter, merge_lora, wrap_lora
    from .train import base_model_and_tokenizer

    base, tokenizer = base_model_and_tokenizer(cfg)
    model = wrap_lora(base, cfg.lora)
    load_adapter(model, checkpoint / "adapter")
    shutil.copytree(checkpoint / "adapter", adapter_out)
    return merge_lora(model), tokenizer


def _release_dtype(model: torch.nn.Module) -> torch.dtype:
    """Releases keep the base model's storage dtype (bf16 for real Yuan2, float32 for tiny demos)."""
    wanted = getattr(model.config, "torch_dtype", "float32")
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(str(wanted), torch.float32)
