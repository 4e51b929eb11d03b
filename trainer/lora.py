"""LoRA through peft: wrap, and read/write the adapter as a standard peft adapter folder.

The LFA convolutions are real `nn.Conv2d` modules, so peft adapts them with its
own Conv2d LoRA layer and the saved adapter loads with `PeftModel.from_pretrained`
onto our model or the public reference model alike.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .runconfig import LoraSection

ADAPTER_WEIGHTS = "adapter_model.safetensors"


def lora_config(section: LoraSection):  # -> peft.LoraConfig (peft imported lazily: it is slow to import)
    from peft import LoraConfig

    return LoraConfig(r=section.r, lora_alpha=section.alpha, lora_dropout=section.dropout,
                      target_modules=list(section.targets), bias="none")


def wrap_lora(model: nn.Module, section: LoraSection) -> nn.Module:
    """The model with LoRA adapters; only adapter weights require grad."""
    from peft import get_peft_model

    return get_peft_model(model, lora_config(section))


def save_adapter(peft_model: nn.Module, full_state: dict[str, torch.Tensor], folder: str | Path) -> None:
    """Write `adapter_config.json` and `adapter_model.safetensors` as `save_pretrained` would.

    `full_state` is the model's (possibly gathered from shards) state dict, so
    this works the same for one process and for FSDP ranks.
    """
    from peft.utils import get_peft_model_state_dict

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    adapter = get_peft_model_state_dict(peft_model, state_dict=full_state)
    adapter = {k: v.detach().to("cpu").contiguous() for k, v in adapter.items()}
    save_file(adapter, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    peft_model.peft_config["default"].save_pretrained(str(folder))


def load_adapter(peft_model: nn.Module, folder: str | Path) -> None:
    """Load adapter weights written by `save_adapter` into a wrapped, unsharded model."""
    from peft.utils import set_peft_model_state_dict

    path = Path(folder) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {ADAPTER_WEIGHTS}")
    result = set_peft_model_state_dict(peft_model, load_file(str(path)))
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing:
        raise ValueError(f"{folder}: adapter is missing weights {missing[:3]}")
