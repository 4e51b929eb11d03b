"""LoRA for training, saved as a standard peft adapter.

peft's LoRA layers carry adapter bookkeeping in their forward (active adapter
lists, variant dispatch, dtype checks) that splits a compiled decoder layer into
many small graphs; on the Yuan2-2B shape that made peft LoRA slower than a full
fine-tune. The modules here do only the maths, compile into the layer's graph,
and keep peft's in-memory layout (`base_layer`, `lora_A.default`, `lora_B.default`)
so the adapter we save is exactly what `PeftModel.from_pretrained` loads, onto our
model or the public reference model alike.

The LFA convolutions are adapted as peft adapts a Conv2d: `lora_A` is a kernel-2
causal convolution to rank r, `lora_B` a pointwise one back. `LoraCausalConv` is a
`trainer.model.CausalConv`, the model's hook for a module that computes an LFA
convolution itself (here: three GEMMs on the sequence layout).

Fused linear layers, behind one switch, `lora.fused` (`resolve_fused`): "auto" lays
them out fused only where that was measured to pay, one CUDA process (LoRA tokens/s at
the Yuan2-2B shape +7.6% on one H100 and about +6% on one H200, docs/perf.md); CPU runs
and sharded runs get the plain layers. Every consequence of the fused layout is in this file: the
parameter views and the `_apply` / `__setstate__` that rebuild them, the model
subclasses that share one input between two layers, the refusal under FSDP, and
`align_optimizer_state` for resumed optimizer state.

Why fuse: the rank-r update costs little arithmetic but, done as its own products,
several full passes over the layer's input and output each step (reading x for A,
writing and adding the expanded B·A·x, and the same again in backward). A fused
layer keeps its frozen weight and its B in ONE buffer, `weight_ext` = [Wᵀ; Bᵀ] of
shape (in + g·r, out), so that

    y = [x | s·x·Aᵀ] · weight_ext

is a single GEMM whose K grows by r per adapter (about 1%); its backward,
dy · weight_extᵀ, yields the gradient for x and for the rank-r activation t = s·x·Aᵀ
(what the separate dy·B product gave) in the same GEMM. Layers that read the same
input (q and k; gate and up) share one [x | t₁ | t₂], each with zero rows for its
siblings' t, so A's product and its gradient run once per input: the model routes
each such pair through one method (`Attention.project_qk`, `MLP.project_gate_up`),
and fusing swaps the module's class for a subclass here that overrides it (`unfuse`
swaps it back). A class swap rather than a flag the model would test: model.py, which
ships in every release, then knows nothing of adapters. [x | t] costs a copy of x, so
a layer that narrows its input (down_proj, 8192 -> 2048) stays plain.
`base_layer.weight` and `lora_B.default.weight` stay ordinary parameters (names,
shapes, state dicts and the saved adapter unchanged) whose storage is a view into
`weight_ext`: an optimizer step on B updates the GEMM's operand, with nothing to
copy. FSDP replaces parameters with shards and would break that view, hence no
fused layout under FSDP.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .model import MLP, Attention, CausalConv, causal_conv
from .runconfig import LoraSection

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
#: peft names the one adapter "default"; its saved keys drop the name and add this prefix.
_ADAPTER = "default"
_PEFT_PREFIX = "base_model.model."

_Model = TypeVar("_Model", bound=nn.Module)


class LoraLinear(nn.Module):
    """y = base(x) + scaling * B(A(dropout(x))), with the base frozen."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base_layer = base
        like: dict[str, Any] = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.ModuleDict({_ADAPTER: nn.Linear(base.in_features, r, bias=False, **like)})
        self.lora_B = nn.ModuleDict({_ADAPTER: nn.Linear(r, base.out_features, bias=False, **like)})
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout else nn.Identity()
        self.scaling = alpha / r
        self.r = r
        _init_pair(_weight(self.lora_A), _weight(self.lora_B))
        # Fused layout (see the module docstring): this layer's slot among the `group_size`
        # layers that share its input; weight_ext is None while unfused.
        self.slot = 0
        self.group_size = 1
        self.weight_ext: torch.Tensor | None
        self.register_buffer("weight_ext", None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight_ext is not None and self.group_size == 1:
            return _project_shared(x, (self,))[0]
        update = F.linear(F.linear(self.dropout(x), _weight(self.lora_A)), _weight(self.lora_B))
        return self.base_layer(x) + update * self.scaling

    def fuse(self, slot: int, group_size: int) -> None:
        """Move the base weight and B into one `weight_ext` buffer; both parameters become views of it."""
        self.slot, self.group_size = slot, group_size
        self._build_ext()

    def _build_ext(self) -> None:
        weight, b = self.base_layer.weight, _weight(self.lora_B)
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
        for p in (self.base_layer.weight, _weight(self.lora_B)):
            p.data = p.data.contiguous()
        self.weight_ext = None
        self.slot, self.group_size = 0, 1

    def delta_weight(self) -> torch.Tensor:
        return _weight(self.lora_B) @ _weight(self.lora_A) * self.scaling


def _project_shared(x: torch.Tensor, layers: tuple[nn.Module, ...]) -> tuple[torch.Tensor, ...]:
    """Each of `layers` applied to x; one fused group shares the work on x (module docstring)."""
    fused = all(isinstance(layer, LoraLinear) and layer.weight_ext is not None and layer.slot == i
                and layer.group_size == len(layers) for i, layer in enumerate(layers))
    if not fused:
        return tuple(layer(x) for layer in layers)
    group: list[LoraLinear] = [layer for layer in layers if isinstance(layer, LoraLinear)]
    first = group[0]
    if isinstance(first.dropout, nn.Dropout) and first.training:
        # peft draws each adapter's dropout mask on its own.
        t = torch.cat([F.linear(layer.dropout(x), _weight(layer.lora_A)) for layer in group], dim=-1)
    else:
        t = F.linear(x, torch.cat([_weight(layer.lora_A) for layer in group]))
    t = t * first.scaling
    x_ext = torch.cat((x, t), dim=-1)
    r = first.r
    return tuple(_ExtendedProduct.apply(x_ext, t[..., r * i:r * (i + 1)], layer.weight_ext, _weight(layer.lora_B))
                 for i, layer in enumerate(group))


class _SharedQK(Attention):
    """An `Attention` whose q_proj and k_proj are one fused group, sharing [x | t_q | t_k]."""

    def project_qk(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, k = _project_shared(z, (self.q_proj, self.k_proj))
        return q, k


class _SharedGateUp(MLP):
    """An `MLP` whose gate_proj and up_proj are one fused group, sharing [x | t_gate | t_up]."""

    def project_gate_up(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate, up = _project_shared(x, (self.gate_proj, self.up_proj))
        return gate, up


#: Model class -> (its subclass with a shared-input pair, the names of that pair).
_SHARED_INPUT: dict[type[nn.Module], tuple[type[nn.Module], tuple[str, str]]] = {
    Attention: (_SharedQK, ("q_proj", "k_proj")),
    MLP: (_SharedGateUp, ("gate_proj", "up_proj")),
}
_UNSHARED = {shared: plain for plain, (shared, _) in _SHARED_INPUT.items()}


class _ExtendedProduct(torch.autograd.Function):
    """x_ext · weight_ext, with B's gradient s·dyᵀ·t routed to the `lora_b` parameter.

    weight_ext is a buffer (the frozen weight gets no gradient); `lora_b`, the view
    of its B rows, is passed only for autograd to route B's gradient. `t` (this
    layer's s·x·Aᵀ, columns of x_ext) is passed apart so that backward keeps only
    it, not all of x_ext; its own gradient reaches it through x_ext.
    """

    @staticmethod
    def forward(ctx: Any, x_ext: torch.Tensor, t: torch.Tensor, weight_ext: torch.Tensor,
                lora_b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(t, weight_ext)
        ctx.b_dtype = lora_b.dtype
        # 2-D products: a batched matmul would broadcast the weight into a bmm.
        out = x_ext.reshape(-1, x_ext.shape[-1]) @ weight_ext.to(x_ext.dtype)
        return out.view(*x_ext.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, torch.Tensor | None]:
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


class LoraCausalConv(CausalConv):
    """LoRA on an LFA convolution: a causal kernel-2 conv to rank r, then a pointwise conv back."""

    def __init__(self, base: nn.Conv2d, r: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base_layer = base
        like: dict[str, Any] = {"device": base.weight.device, "dtype": base.weight.dtype}
        kernel = cast(tuple[int, int], base.kernel_size)
        padding = cast(tuple[int, int], base.padding)
        self.lora_A = nn.ModuleDict({_ADAPTER: nn.Conv2d(base.in_channels, r, kernel, padding=padding, bias=False,
                                                         **like)})
        self.lora_B = nn.ModuleDict({_ADAPTER: nn.Conv2d(r, base.out_channels, (1, 1), bias=False, **like)})
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout else nn.Identity()
        self.scaling = alpha / r
        _init_pair(_weight(self.lora_A), _weight(self.lora_B))

    def forward(self, x: torch.Tensor, starts: torch.Tensor | None) -> torch.Tensor:
        """What `trainer.model.causal_conv` computes for this module, on the (B, S, C) layout (it calls this)."""
        low = causal_conv(self.lora_A[_ADAPTER], self.dropout(x), starts)
        update = F.linear(low, _weight(self.lora_B)[:, :, 0, 0])
        return causal_conv(self.base_layer, x, starts) + update * self.scaling

    def delta_weight(self) -> torch.Tensor:
        a = _weight(self.lora_A)  # (r, in, 2, 1)
        b = _weight(self.lora_B)[:, :, 0, 0]  # (out, r)
        return torch.einsum("or,rikl->oikl", b, a) * self.scaling


def _weight(half: nn.ModuleDict) -> torch.Tensor:
    """The weight of the adapter's layer in `lora_A` or `lora_B` (peft's `lora_A.default.weight`)."""
    return cast("nn.Linear | nn.Conv2d", half[_ADAPTER]).weight


def _init_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    # peft's default: A like nn.Linear's init, B zero, so training starts at the base model.
    nn.init.kaiming_uniform_(a, a=math.sqrt(5))
    nn.init.zeros_(b)


# -- wrapping, the fused switch ------------------------------------------------


def resolve_fused(setting: bool | Literal["auto"], device: torch.device | str, world_size: int) -> bool:
    """Whether linear LoRA layers take the fused layout: `lora.fused` resolved for this run.

    "auto": fused for one CUDA process, where it was measured to pay; plain on CPU
    (unmeasured there, and the plain layers are the simpler path) and when sharded.
    True when sharded is refused: FSDP replaces each parameter with a shard in storage
    of its own, which would cut the views the fused layout is made of.
    """
    sharded = world_size > 1
    if setting == "auto":
        return torch.device(device).type == "cuda" and not sharded
    if setting and sharded:
        raise ValueError("lora.fused: true cannot run sharded (FSDP replaces the parameters that the fused "
                         "layout keeps as views of one buffer); use auto or false")
    return bool(setting)


def wrap_lora(model: _Model, section: LoraSection, *, fused: bool | Literal["auto"] | None = None,
              device: torch.device | str = "cpu", world_size: int = 1) -> _Model:
    """Replace the targeted modules in place; freeze everything but the adapters.

    `fused` (None: `section.fused`) is resolved by `resolve_fused` for a run that
    trains on `device` in `world_size` processes; the layout never changes what
    is computed, saved or loaded.
    """
    use_fused = resolve_fused(section.fused if fused is None else fused, device, world_size)
    for p in model.parameters():
        p.requires_grad_(False)
    targets = set(section.targets)
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if name not in targets:
                continue
            lora: nn.Module
            if type(child) is nn.Linear:
                lora = LoraLinear(child, section.r, section.alpha, section.dropout)
            elif type(child) is nn.Conv2d:
                lora = LoraCausalConv(child, section.r, section.alpha, section.dropout)
            else:
                continue
            setattr(parent, name, lora)
            replaced += 1
    if not replaced:
        raise ValueError(f"lora.targets {sorted(targets)} matched no module of the model")
    if use_fused:
        fuse(model)
    return model


def fuse(model: nn.Module, *, narrowing: bool = False) -> None:
    """Lay the plain linear LoRA layers out fused (module docstring).

    `narrowing` fuses layers that narrow their input too (down_proj), against the rule,
    for benchmarks to price it.
    """
    for parent in list(model.modules()):
        children = {name: child for name, child in parent.named_children()
                    if isinstance(child, LoraLinear) and child.weight_ext is None}
        shared, pair = _SHARED_INPUT.get(type(parent), (None, ()))
        paired = pair if pair and all(n in children for n in pair) else ()
        groups = ([paired] if paired else []) + [(name,) for name in children if name not in paired]
        for names in groups:
            layers = [children[n] for n in names]
            # [x | t] is a copy of x: worth it when the group's outputs are at least as wide
            # as x (what fusing saves scales with them). A layer that narrows its input
            # (down_proj, 8192 -> 2048) stays plain: copying x would cost more than it saves.
            # (A base layer with a bias stays plain too: the fused product has no bias term.)
            widens = layers[0].base_layer.in_features <= sum(layer.base_layer.out_features for layer in layers)
            if (widens or narrowing) and all(layer.base_layer.bias is None for layer in layers):
                for slot, layer in enumerate(layers):
                    layer.fuse(slot, len(layers))
                if len(layers) > 1 and shared is not None:
                    parent.__class__ = shared


def unfuse(model: nn.Module) -> None:
    """Back to the plain layout: own storage for every parameter, the model's own classes."""
    for module in model.modules():
        if isinstance(module, LoraLinear):
            module.unfuse()
        plain = _UNSHARED.get(type(module))
        if plain is not None:
            module.__class__ = plain


def align_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Give every state tensor (Adam's moments) its parameter's memory layout; call after loading state.

    State loaded from a checkpoint comes back contiguous, while a fused layer's B is a
    transposed view of its `weight_ext`; fused optimizers walk parameter and state as
    flat memory, so mismatched layouts would pair the wrong elements, silently.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


# -- the adapter on disk ---------------------------------------------------------


def adapter_state(full_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter tensors of a model state dict, under the names peft saves."""
    out = {}
    for name, tensor in full_state.items():
        if ".lora_A." in name or ".lora_B." in name:
            out[_PEFT_PREFIX + name.replace(f".{_ADAPTER}.", ".")] = tensor.detach().to("cpu").contiguous()
    return out


def save_adapter(section: LoraSection, full_state: dict[str, torch.Tensor], folder: str | Path) -> None:
    """Write `adapter_model.safetensors` and `adapter_config.json` as peft's `save_pretrained` would.

    `full_state` is the model's (possibly gathered from shards) state dict, so this
    works the same for one process and for FSDP ranks.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state(full_state), str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    config: dict[str, Any] = {
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
def merge_lora(model: _Model) -> _Model:
    """Fold every adapter into its base weight and put the plain modules back."""
    unfuse(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoraLinear | LoraCausalConv):
                base = child.base_layer
                base.weight += child.delta_weight().to(base.weight.dtype)
                setattr(parent, name, base)
    return model
