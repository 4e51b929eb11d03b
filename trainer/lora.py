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

Fused linear layers (the default on one process): the rank-r update costs little
arithmetic but, done as its own products, several full passes over the layer's
input and output each step (reading x for A, writing and adding the expanded
B·A·x, and the same again in backward). A fused layer keeps its frozen weight and
its B in ONE buffer, `weight_ext` = [Wᵀ; Bᵀ] of shape (in + g·r, out), so that

    y = [x | s·x·Aᵀ] · weight_ext

is a single GEMM whose K grows by r per adapter (about 1%); its backward,
dy · weight_extᵀ, yields the gradient for x and for the rank-r activation t = s·x·Aᵀ
(what the separate dy·B product gave) in the same GEMM. Layers that read the same
input (q and k; gate and up: `trainer.model.project`) share one [x | t₁ | t₂],
each with zero rows for its siblings' t, so A's product and its gradient run once
per input. [x | t] costs a copy of x, so a layer that narrows its input (down_proj,
8192 -> 2048) stays plain. `base_layer.weight` and `lora_B.default.weight` stay ordinary parameters
(names, shapes, state dicts and the saved adapter unchanged) whose storage is a
view into `weight_ext`: an optimizer step on B updates the GEMM's operand, with
nothing to copy. FSDP replaces parameters with shards and would break that view,
so sharded runs wrap with `fused=False`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
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
        self.r = r
        _init_pair(self.lora_A[_ADAPTER].weight, self.lora_B[_ADAPTER].weight)
        # Fused layout (see the module docstring): this layer's slot among the `group_size`
        # layers that share its input; weight_ext is None while unfused.
        self.slot = 0
        self.group_size = 1
        self.register_buffer("weight_ext", None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight_ext is not None and self.group_size == 1:
            return self.project_group(x, (self,))[0]
        update = F.linear(F.linear(self.dropout(x), self.lora_A[_ADAPTER].weight), self.lora_B[_ADAPTER].weight)
        return self.base_layer(x) + update * self.scaling

    def project_group(self, x: torch.Tensor, layers: tuple[nn.Module, ...]) -> tuple[torch.Tensor, ...]:
        """Each of `layers` applied to x; one fused group shares the work on x (`trainer.model.project`)."""
        fused = all(isinstance(layer, LoraLinear) and layer.weight_ext is not None and layer.slot == i
                    and layer.group_size == len(layers) for i, layer in enumerate(layers))
        if not fused:
            return tuple(layer(x) for layer in layers)
        if isinstance(self.dropout, nn.Dropout) and self.training:
            # peft draws each adapter's dropout mask on its own.
            t = torch.cat([F.linear(layer.dropout(x), layer.lora_A[_ADAPTER].weight) for layer in layers], dim=-1)
        else:
            t = F.linear(x, torch.cat([layer.lora_A[_ADAPTER].weight for layer in layers]))
        t = t * self.scaling
        x_ext = torch.cat((x, t), dim=-1)
        r = self.r
        return tuple(_ExtendedProduct.apply(x_ext, t[..., r * i:r * (i + 1)], layer.weight_ext,
                                            layer.lora_B[_ADAPTER].weight)
                     for i, layer in enumerate(layers))

    def fuse(self, slot: int, group_size: int) -> None:
        """Move the base weight and B into one `weight_ext` buffer; both parameters become views of it."""
        self.slot, self.group_size = slot, group_size
        self._build_ext()

    def _build_ext(self) -> None:
        weight, b = self.base_layer.weight, self.lora_B[_ADAPTER].weight
        out_features, in_features = weight.shape
        first = in_features + self.r * self.slot
        ext = torch.zeros(in_features + self.r * self.group_size, out_features, dtype=weight.dtype,
                          device=weight.device)
        with torch.no_grad():
            ext[:in_features] = weight.t()
            ext[first:first + self.r] = b.t()
        # Setting .data keeps the Parameter objects (an optimizer or hook holding
        # them still sees the same ones) and points their storage into ext.
        weight.data = ext[:in_features].t()
        b.data = ext[first:first + self.r].t()
        self.weight_ext = ext

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> LoraLinear:
        # .to() / .cuda() / .half() convert every tensor on its own, which would cut
        # the parameters loose from weight_ext: convert them, then rebuild the buffer.
        fused = self.weight_ext is not None
        self.weight_ext = None
        super()._apply(fn, recurse)
        if fused:
            self._build_ext()
        return self

    def __setstate__(self, state: dict) -> None:
        # copy.deepcopy and pickle copy each parameter on its own, like _apply.
        super().__setstate__(state)
        if self.weight_ext is not None:
            self._build_ext()

    def unfuse(self) -> None:
        """Give the parameters storage of their own again (before merging or sharding)."""
        if self.weight_ext is None:
            return
        for p in (self.base_layer.weight, self.lora_B[_ADAPTER].weight):
            p.data = p.data.contiguous()
        self.weight_ext = None
        self.slot, self.group_size = 0, 1

    def delta_weight(self) -> torch.Tensor:
        return self.lora_B[_ADAPTER].weight @ self.lora_A[_ADAPTER].weight * self.scaling


class _ExtendedProduct(torch.autograd.Function):
    """x_ext · weight_ext, with B's gradient s·dyᵀ·t routed to the `lora_b` parameter.

    weight_ext is a buffer (the frozen weight gets no gradient); `lora_b`, the view
    of its B rows, is passed only for autograd to route B's gradient. `t` (this
    layer's s·x·Aᵀ, columns of x_ext) is passed apart so that backward keeps only
    it, not all of x_ext; its own gradient reaches it through x_ext.
    """

    @staticmethod
    def forward(ctx, x_ext: torch.Tensor, t: torch.Tensor, weight_ext: torch.Tensor,  # type: ignore[override]
                lora_b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(t, weight_ext)
        ctx.b_dtype = lora_b.dtype
        # 2-D products: a batched matmul would broadcast the weight into a bmm.
        out = x_ext.reshape(-1, x_ext.shape[-1]) @ weight_ext.to(x_ext.dtype)
        return out.view(*x_ext.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        t, weight_ext = ctx.saved_tensors
        flat = grad.reshape(-1, grad.shape[-1])
        grad_x = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (flat @ weight_ext.to(grad.dtype).t()).view(*grad.shape[:-1], weight_ext.shape[0])
        if ctx.needs_input_grad[3]:
            # Computed as (tᵀ·dy)ᵀ: the layout of the parameter (a transposed view of
            # weight_ext's rows), so autograd stores it without another copy.
            grad_b = (t.reshape(-1, t.shape[-1]).to(grad.dtype).t() @ flat).to(ctx.b_dtype).t()
        return grad_x, None, None, grad_b


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


#: Sibling layers that read the same input; fused together when all are adapted.
SHARED_INPUT_GROUPS = (("q_proj", "k_proj"), ("gate_proj", "up_proj"))


def wrap_lora(model: nn.Module, section: LoraSection, *, fused: bool = True) -> nn.Module:
    """Replace the targeted modules in place; freeze everything but the adapters.

    `fused` lays linear layers out for the single-GEMM path (module docstring);
    pass False for a model that FSDP will shard.
    """
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
    if fused:
        _fuse(model)
    model.lora_section = section
    return model


def _fuse(model: nn.Module) -> None:
    for parent in list(model.modules()):
        children = dict(parent.named_children())
        groups = [names for names in SHARED_INPUT_GROUPS if all(isinstance(children.get(n), LoraLinear) for n in names)]
        grouped = {n for names in groups for n in names}
        groups += [(name,) for name, child in children.items() if isinstance(child, LoraLinear) and name not in grouped]
        for names in groups:
            layers = [children[n] for n in names]
            # [x | t] is a copy of x: worth it when the group's outputs are at least as wide
            # as x (what fusing saves scales with them). A layer that narrows its input
            # (down_proj, 8192 -> 2048) stays plain: copying x would cost more than it saves.
            # (A base layer with a bias stays plain too: the fused product has no bias term.)
            widens = layers[0].base_layer.in_features <= sum(layer.base_layer.out_features for layer in layers)
            if widens and all(layer.base_layer.bias is None for layer in layers):
                for slot, layer in enumerate(layers):
                    layer.fuse(slot, len(layers))


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
                if isinstance(child, LoraLinear):
                    child.unfuse()
                base = child.base_layer
                base.weight += child.delta_weight().to(base.weight.dtype)
                setattr(parent, name, base)
    return model
