"""Checkpoint folders in the HF Yuan2 layout: read, validate, write.

A folder holds `config.json` and weights as `model.safetensors`, safetensors
shards with `model.safetensors.index.json`, or (read only) `pytorch_model.bin`
files, which are opened with `torch.load(weights_only=True)` and nothing else.
We always write safetensors, with the names and shapes of the public Yuan2
checkpoints, so our releases load in the reference code too.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import YuanConfig
from .model import YuanForCausalLM


class CheckpointError(ValueError):
    """A checkpoint folder is incomplete or does not match its config."""


SAFE_SINGLE = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_SINGLE = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"

#: Buffers some exported Yuan2 checkpoints carry; they are recomputed, not loaded.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq", "rotary_emb.cos_cached", "rotary_emb.sin_cached")


def read_config(folder: str | Path) -> YuanConfig:
    path = Path(folder) / "config.json"
    if not path.parent.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder does not exist")
    if not path.is_file():
        raise CheckpointError(f"{folder}: missing config.json (not a Yuan2 checkpoint folder?)")
    return YuanConfig.from_file(path)


def weight_files(folder: str | Path) -> list[Path]:
    """The weight files of a folder, in the order its index (if any) names them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder does not exist")
    for index_name in (SAFE_INDEX, BIN_INDEX):
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CheckpointError(f"{index}: not a valid weight index ({exc})") from exc
            files = [folder / name for name in dict.fromkeys(weight_map.values())]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise CheckpointError(f"{folder}: shard(s) named in {index_name} are missing: {missing}")
            return files
    for single in (SAFE_SINGLE, BIN_SINGLE):
        if (folder / single).is_file():
            return [folder / single]
    raise CheckpointError(
        f"{folder}: no weights found (expected {SAFE_SINGLE}, {SAFE_INDEX}, {BIN_SINGLE} or {BIN_INDEX})"
    )


def read_state_dict(folder: str | Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        if path.suffix == ".safetensors":
            state.update(load_file(str(path)))
        else:
            try:
                part = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:  # unpickling errors come in many types
                raise CheckpointError(f"{path}: refused to load ({type(exc).__name__}: {exc})") from exc
            state.update(part)
    return state


def pick_device(name: str = "auto") -> torch.device:
    """The device a command runs its model on: `auto` is the first GPU when there is one, else the CPU.

    Refuses (ValueError) a CUDA device on a machine without one, rather than failing mid-load.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device {name!r}: {exc}") from exc
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ValueError(f"--device {name}: this machine has {count} CUDA device(s)")
    return device


def load_model(path: str | Path, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None) -> YuanForCausalLM:
    """The model of a local checkpoint folder, in eval mode.

    `dtype` defaults to float32 on CPU and bfloat16 on GPUs; `device` to CPU.
    Every weight is checked by name and shape before anything is assigned.
    """
    config = read_config(path)
    device = torch.device(device or "cpu")
    if dtype is None:
        dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    state = read_state_dict(path)
    with torch.device("meta"):
        model = YuanForCausalLM(config)
    load_weights(model, state, source=str(path))
    model.to(device=device, dtype=dtype)
    return model.eval()


def load_weights(model: YuanForCausalLM, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Assign `state` to `model` after checking that every weight is there with its shape."""
    expected = dict(model.state_dict())
    tied = model.config.tie_word_embeddings
    if tied:
        expected.pop("lm_head.weight", None)
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    state = {k: v for k, v in state.items() if not k.endswith(_IGNORED_SUFFIXES)}
    missing = sorted(set(expected) - set(state))
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise CheckpointError(f"{source}: missing weight(s) {missing[:5]}{more}")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise CheckpointError(
            f"{source}: unexpected weight(s) {unexpected[:5]}: not the Yuan2 architecture this config describes"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{source}: weight {name} has shape {tuple(tensor.shape)}, "
                f"config.json implies {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state, strict=False, assign=True)
    if tied:
        model.lm_head.weight = model.model.embed_tokens.weight


def hf_state(state: dict[str, torch.Tensor], config: YuanConfig) -> dict[str, torch.Tensor]:
    """HF-named tensors to write: contiguous, on CPU, the tied head left out (as HF does)."""
    out = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    if config.tie_word_embeddings:
        out.pop("lm_head.weight", None)
    return out


def save_checkpoint(state: dict[str, torch.Tensor], config: YuanConfig, folder: str | Path, *,
                    max_shard_bytes: int = 5 * 2**30, dtype: torch.dtype | None = None) -> list[Path]:
    """Write `config.json` and safetensors weights (sharded above `max_shard_bytes`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    config.torch_dtype = str(next(iter(state.values())).dtype).removeprefix("torch.")
    config.save(folder / "config.json")
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(state):
        nbytes = state[name].numel() * state[name].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = state[name]
        size += nbytes
    meta = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], str(folder / SAFE_SINGLE), metadata=meta)
        return [folder / SAFE_SINGLE]
    paths, weight_map = [], {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name), metadata=meta)
        paths.append(folder / name)
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / SAFE_INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return paths


def save_model(model: YuanForCausalLM, folder: str | Path, *, max_shard_bytes: int = 5 * 2**30,
               dtype: torch.dtype | None = None) -> list[Path]:
    return save_checkpoint(hf_state(model.state_dict(), model.config), model.config, folder,
                           max_shard_bytes=max_shard_bytes, dtype=dtype)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_sha256sums(folder: str | Path) -> Path:
    """`SHA256SUMS` over every file below `folder`, in `sha256sum -c` format."""
    folder = Path(folder)
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
        lines.append(f"{sha256_file(path)}  {path.relative_to(folder).as_posix()}")
    out = folder / "SHA256SUMS"
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out


def verify_sha256sums(folder: str | Path) -> list[str]:
    """Names of files whose checksum no longer matches `SHA256SUMS` (empty when intact)."""
    folder = Path(folder)
    bad = []
    for line in (folder / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, name = line.split("  ", 1)
        path = folder / name
        if not path.is_file() or sha256_file(path) != digest:
            bad.append(name)
    return bad
