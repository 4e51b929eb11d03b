"""LoRA for training, saved as a standard peft adapter.

peft's LoRA layers carry adapter bookkeeping in their forward (active adapter
lists, variant dispatch, dtype checks) that splits a compiled decoder layer into
many small graphs; on the Yuan2-2B shape that made peft LoRA slower than a full
fine-tune. The modules here do only the maths, compile into the layer's graph,
and keep peft's in-memory layout (`base_layer`, `lora_A.default`, `lora_B.default`)
so the adapter we save is exactly what `PeftModel.from_pretrained` loads, onto our
model or the public reference model alike.

The LFA convolutions are adapted as peft adapts a Conv2d: `lora_A` is a kernel-2
causal convolution to rank r, `lora_B` a pointwise one back.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .model import causal_conv
from .runconfig import LoraSection

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
#: peft names the one adapter "default"; its saved keys drop the name and add this prefix.
_ADAPTER = "default"
_PEFT_PREFIX = "base_model.model."


class LoraLinear(nn.Module):
    """y = base(x) + scaling * B(A(dropout(x))), with the base frozen."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base_layer = base
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.ModuleDict({_ADAPTER: nn.Linear(base.in_features, r, bias=False, **like)})
        self.lora_B = nn.ModuleDict({_ADAPTER: nn.Linear(r, base.out_features, bias=False, **like)})
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.scaling = alpha / r
        _init_pair(self.lora_A[_ADAPTER].weight, self.lora_B[_ADAPTER].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.dropout(x), self.lora_A[_ADAPTER].weight), self.lora_B[_ADAPTER].weight)
        return self.base_layer(x) + update * self.scaling

    def delta_weight(self) -> torch.Tensor:
        return self.lora_B[_ADAPTER].weight @ self.lora_A[_ADAPTER].weight * self.scaling


class LoraCausalConv(nn.Module):
    """LoRA on an LFA convolution: a causal kernel-2 conv to rank r, then a pointwise conv back."""

    def __init__(self, base: nn.Conv2d, r: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base_layer = base
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.ModuleDict({_ADAPTER: nn.Conv2d(base.in_channels, r, base.kernel_size,
                                                         padding=base.padding, bias=False, **like)})
        self.lora_B = nn.ModuleDict({_ADAPTER: nn.Conv2d(r, base.out_channels, (1, 1), bias=False, **like)})
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.scaling = alpha / r
        _init_pair(self.lora_A[_ADAPTER].weight, self.lora_B[_ADAPTER].weight)

    def causal_conv(self, x: torch.Tensor, starts: torch.Tensor | None) -> torch.Tensor:
        """What `trainer.model._causal_conv` computes for this module (it calls this)."""
        low = causal_conv(self.lora_A[_ADAPTER], self.dropout(x), starts)
        update = F.linear(low, self.lora_B[_ADAPTER].weight[:, :, 0, 0])
        return causal_conv(self.base_layer, x, starts) + update * self.scaling

    def delta_weight(self) -> torch.Tensor:
        a = self.lora_A[_ADAPTER].weight  # (r, in, 2, 1)
        b = self.lora_B[_ADAPTER].weight[:, :, 0, 0]  # (out, r)
        return torch.einsum("or,rikl->oikl", b, a) * self.scaling


def _init_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    # peft's default: A like nn.Linear's init, B zero, so training starts at the base model.
    nn.init.kaiming_uniform_(a, a=math.sqrt(5))
    nn.init.zeros_(b)


def wrap_lora(model: nn.Module, section: LoraSection) -> nn.Module:
    """Replace the targeted modules in place; freeze everything but the adapters."""
    for p in model.parameters():
        p.requires_grad_(False)
    targets = set(section.targets)
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if name not in targets:
                continue
            if type(child) is nn.Linear:
                setattr(parent, name, LoraLinear(child, section.r, section.alpha, section.dropout))
            elif type(child) is nn.Conv2d:
                setattr(parent, name, LoraCausalConv(child, section.r, section.alpha, section.dropout))
            else:
                continue
            replaced += 1
    if not replaced:
        raise ValueError(f"lora.targets {sorted(targets)} matched no module of the model")
    model.lora_section = section
    return model


def adapter_state(full_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter tensors of a model state dict, under the names peft saves."""
    out = {}
    for name, tensor in full_state.items():
        if ".lora_A." in name or ".lora_B." in name:
            out[_PEFT_PREFIX + name.replace(f".{_ADAPTER}.", ".")] = tensor.detach().to("cpu").contiguous()
    return out


def save_adapter(model: nn.Module, full_state: dict[str, torch.Tensor], folder: str | Path) -> None:
    """Write `adapter_model.safetensors` and `adapter_config.json` as peft's `save_pretrained` would.

    `full_state` is the model's (possibly gathered from shards) state dict, so this
    works the same for one process and for FSDP ranks.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state(full_state), str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    section: LoraSection = model.lora_section
    config = {
        "peft_type": "LORA", "task_type": None, "r": section.r, "lora_alpha": section.alpha,
        "lora_dropout": section.dropout, "target_modules": sorted(section.targets), "bias": "none",
        "fan_in_fan_out": False, "init_lora_weights": True, "use_rslora": False, "use_dora": False,
        "modules_to_save": None, "inference_mode": True, "base_model_name_or_path": None,
        "revision": None, "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {},
        "alpha_pattern": {},
    }
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def load_adapter(model: nn.Module, folder: str | Path) -> None:
    """Load adapter weights written by `save_adapter` (or by peft) into a wrapped, unsharded model."""
    path = Path(folder) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {ADAPTER_WEIGHTS}")
    expected = {k for k in model.state_dict() if ".lora_A." in k or ".lora_B." in k}
    state = {}
    for name, tensor in load_file(str(path)).items():
        local = name.removeprefix(_PEFT_PREFIX).replace(".lora_A.", f".lora_A.{_ADAPTER}.") \
            .replace(".lora_B.", f".lora_B.{_ADAPTER}.")
        state[local] = tensor
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"{folder}: adapter does not fit the model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    model.load_state_dict(state, strict=False)


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain modules back."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoraLinear | LoraCausalConv):
                base = child.base_layer
                base.weight += child.delta_weight().to(base.weight.dtype)
                setattr(parent, name, base)
    return model
