"""The Yuan 2.0 decoder with Localized Filtering-based Attention (LFA), top to bottom.

This file imports only torch and holds only the network, for inference and
training alike: it is also copied, unchanged, into every released checkpoint
folder, where `modeling_yuan.py` wraps it for `transformers.AutoModelForCausalLM`
(see `trainer.hf`). It takes any config object with the attributes of
`trainer.config.YuanConfig` (an HF config works). Training machinery lives
elsewhere: the chunked loss in `trainer.loss` (which reads `YuanModel`'s hidden
states and `lm_head`), LoRA in `trainer.lora`. LoRA hooks in through two plain
extension points, documented where they are: `CausalConv` (a module that computes
an LFA convolution itself) and `Attention.project_qk` / `MLP.project_gate_up` (the
projections that read one input, overridable together).

Shapes: B batch, S new tokens, T cached + new tokens, H hidden, N heads, D head dim.

Two facts of the architecture that a naive port gets wrong:
- LFA filters the queries' and keys' input only; values read the unfiltered x.
- `q_proj` and `k_proj` are concatenated along the output and split per head
  into chunks of 2*D: head i's query is the first D of chunk i, its key the
  second D. So query head i is not rows [i*D, (i+1)*D) of `q_proj`.

Packing and padding are expressed by one (B, S) boolean, `starts`: True where a
token begins a new sequence. A start resets the rotary position to 0, blocks
attention to earlier tokens and zeroes the LFA's view of earlier tokens, so a
packed row computes exactly what its examples compute one by one.

The plain forward (input ids only: no `attention_mask`, no `segment_ids`, nothing
cached yet) computes what the public reference `yuan_hf_model.py` computes on the
same row, `<eod>` tokens (`config.eod_token_id`) included. The reference builds its
mask from the `<eod>` positions whenever it is training or `config.reset_position_ids`
is set, and that mask blocks attention only when `config.reset_attention_mask` is
set: a token after an `<eod>` at index i then sees nothing at or before i. It throws
away the reset positions that the same function computes, and its LFA filters the
whole row, so neither positions nor the LFA restart after an `<eod>`. That is why
this is not a packed row (which restarts all three at each example, the way
training sees examples): it is one stream whose attention stops at each `<eod>`.
Both flags default to true when a config lacks them, as in the real Yuan2 configs
and in every `config.json` cotrain writes. Finding the `<eod>`s waits for the device
once per plain forward (only while the flags call for it); a row without an `<eod>`
before its last token keeps the unmasked causal kernel. When such a forward starts
a cache, the keys at or before the last `<eod>` stay hidden from later tokens too,
as the reference's decoding mask hides them. Padded (`attention_mask`), packed
(`segment_ids`) and continued (cached) forwards do not look for `<eod>`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
from torch.utils.checkpoint import checkpoint

#: Target value of positions that carry no loss.
IGNORE_INDEX = -100
#: SDPA backends for unpacked causal attention on Hopper GPUs, in priority order: the
#: default of `YuanModel.causal_sdpa_backends`. cuDNN's fused attention is the fastest at
#: Yuan's head size on an H100 (bench/attention_backends.py, docs/perf.md); the others stay
#: as fallbacks. Other architectures keep PyTorch's order: that is where cuDNN attention
#: has been seen to give silently wrong results, and where we have not measured it.
CAUSAL_SDPA_BACKENDS: tuple[SDPBackend, ...] = (
    SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH)
#: `sdpa_kernel(..., set_priority=)` is recent; without it, PyTorch's order it is.
_SDPA_PRIORITY = "set_priority" in inspect.signature(sdpa_kernel).parameters


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Statistics in float32 whatever the input dtype, as the reference does.
        variance = x.float().pow(2).mean(-1, keepdim=True)
        x = (x.float() * torch.rsqrt(variance + self.eps)).to(self.weight.dtype)
        return self.weight * x


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables (B, 1, S, D) for the given positions (B, S), "rotate half" layout."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    freqs = positions.float()[..., None] * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _shift_right(x: torch.Tensor, starts: torch.Tensor | None) -> torch.Tensor:
    """x[t-1] at position t (zero at t=0 and wherever a sequence starts)."""
    prev = F.pad(x, (0, 0, 1, 0))[:, :-1]
    if starts is not None:
        prev = prev.masked_fill(starts[..., None], 0.0)
    return prev


class CausalConv(nn.Module):
    """Base of modules that stand in for an LFA convolution and compute it themselves.

    Extension point (`trainer.lora.LoraCausalConv` uses it): `causal_conv` calls
    such a module as `forward(x, starts)` on the (B, S, C) layout and takes its
    (B, S, C_out) result as the convolution's, so the module can keep the one-GEMM
    layout below instead of the 4-D convolution layout.
    """

    def forward(self, x: torch.Tensor, starts: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


def causal_conv(conv: nn.Module, x: torch.Tensor, starts: torch.Tensor | None) -> torch.Tensor:
    """A kernel-2 causal convolution along the sequence, W[..., 0]·x[t-1] + W[..., 1]·x[t] + b.

    A plain `nn.Conv2d` runs as ONE matrix product with both weight taps stacked
    on the output side; shifting the t-1 half of the product afterwards equals
    shifting the input (the product is per position), and costs an elementwise
    add instead of a second GEMM, a padded copy or a cuDNN convolution.

    A `CausalConv` computes itself. Anything else in the conv's place (a peft LoRA
    wrapper, say) is called as the convolution it claims to be, on a (B, C, 2, S)
    stack of [x[t-1], x[t]] whose middle output row is exactly the wanted value.
    """
    if type(conv) is nn.Conv2d:
        taps = conv.weight[:, :, :, 0]
        past, now = F.linear(x, torch.cat((taps[:, :, 0], taps[:, :, 1]))).chunk(2, dim=-1)
        out = now + _shift_right(past, starts)
        return out if conv.bias is None else out + conv.bias
    if isinstance(conv, CausalConv):
        return conv(x, starts)
    stacked = torch.stack((_shift_right(x, starts), x), dim=1).permute(0, 3, 1, 2)
    return conv(stacked)[:, :, 1, :].transpose(1, 2)


class LocalizedFiltering(nn.Module):
    """LFA: two causal kernel-2 convolutions (H -> H/2 -> H), residual, RMSNorm.

    Kernel index 0 multiplies position t-1 and index 1 position t, as in the
    reference's `Conv2d(..., (2, 1), padding=(1, 0))` truncated to S outputs.
    """

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(hidden_size, hidden_size // 2, (2, 1), padding=(1, 0))
        self.conv2 = nn.Conv2d(hidden_size // 2, hidden_size, (2, 1), padding=(1, 0))
        self.output_layernorm = RMSNorm(hidden_size, eps)

    def filter(self, x: torch.Tensor, starts: torch.Tensor | None) -> torch.Tensor:
        y1 = causal_conv(self.conv1, x, starts)
        y2 = causal_conv(self.conv2, y1, starts)
        return self.output_layernorm(y2 + x)

    def forward(self, x: torch.Tensor, starts: torch.Tensor | None,
                memory: torch.Tensor | None = None, memory_starts: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Filter x; with `memory` (B, 2, H), the two inputs before x are prepended.

        `memory_starts` (B, 2) are the start flags of those two remembered inputs.
        """
        if memory is None:
            return self.filter(x, starts)
        assert memory_starts is not None and starts is not None, "remembered inputs need start flags"
        full = torch.cat((memory, x), dim=1)
        full_starts = torch.cat((memory_starts, starts), dim=1)
        return self.filter(full, full_starts)[:, 2:]


class Attention(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = hidden // self.num_heads
        self.rope_theta = float(getattr(config, "rope_theta", 10000.0))
        self.q_proj = nn.Linear(hidden, hidden, bias=False)
        self.k_proj = nn.Linear(hidden, hidden, bias=False)
        self.v_proj = nn.Linear(hidden, hidden, bias=False)
        self.o_proj = nn.Linear(hidden, hidden, bias=False)
        self.lf_gate = LocalizedFiltering(hidden, config.rms_norm_eps)

    def forward(self, x: torch.Tensor, ctx: _Context, layer: int) -> torch.Tensor:
        b, s, h = x.shape
        n, d = self.num_heads, self.head_dim
        cache = ctx.cache
        memory = None if cache is None else cache.remember_lf_inputs(layer, x)
        z = self.lf_gate(x, ctx.starts, memory, ctx.memory_starts if memory is not None else None)

        qk = torch.cat(self.project_qk(z), dim=-1).view(b, s, n, 2 * d)
        q, k = qk.transpose(1, 2).chunk(2, dim=-1)
        v = self.v_proj(x).view(b, s, n, d).transpose(1, 2)
        q = apply_rotary(q, ctx.cos, ctx.sin)
        k = apply_rotary(k, ctx.cos, ctx.sin)
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        if ctx.mask is None:
            out = _causal_attention(q, k, v, ctx.sdpa_backends)
        elif isinstance(ctx.mask, BlockMask):
            out = _flex_attention()(q, k, v, block_mask=ctx.mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=ctx.mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, s, h))

    def project_qk(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q_proj(z) and k_proj(z).

        Extension point: the one place where two projections of the attention read the
        same input, so that a subclass can compute them together, sharing work on z, by
        overriding this method alone (`trainer.lora` does for its fused layout).
        """
        return self.q_proj(z), self.k_proj(z)


def _causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      backends: list[SDPBackend] | None) -> torch.Tensor:
    if backends is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with sdpa_kernel(backends, set_priority=True):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def _sdpa_backends(device: torch.device, preferred: list[SDPBackend] | None) -> list[SDPBackend] | None:
    """The backend order for unpacked causal attention on this device (None: PyTorch's)."""
    if device.type != "cuda" or preferred is None or not _SDPA_PRIORITY:
        return None
    return preferred if _is_hopper(device.index) else None


@functools.cache
def _is_hopper(index: int | None) -> bool:
    return torch.cuda.get_device_capability(index) == (9, 0)


@functools.cache
def _flex_attention():  # -> compiled flex_attention
    # FlexAttention is only fast compiled; compile it once, on first packed GPU batch.
    return torch.compile(flex_attention, dynamic=False)


def _document_block_mask(seq: torch.Tensor, valid: torch.Tensor) -> BlockMask:
    """Causal attention within each packed example (plus self), as a sparse FlexAttention mask.

    Blocks that cross examples are skipped entirely, so packed rows cost what
    their examples cost, not a dense S x S mask.
    """
    b, s = seq.shape

    def same_document(batch, head, q, kv):
        return ((seq[batch, q] == seq[batch, kv]) & (kv <= q) & valid[batch, kv]) | (q == kv)

    return create_block_mask(same_document, b, None, s, s, device=seq.device)


class MLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Yuan puts the activation on up_proj, not on gate_proj as LLaMA does.
        gate, up = self.project_gate_up(x)
        return self.down_proj(gate * F.silu(up))

    def project_gate_up(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """gate_proj(x) and up_proj(x); an extension point like `Attention.project_qk`."""
        return self.gate_proj(x), self.up_proj(x)


class DecoderLayer(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config.hidden_size, config.intermediate_size)

    def forward(self, x: torch.Tensor, ctx: _Context, layer: int) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), ctx, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


@dataclasses.dataclass
class _Context:
    """Per-forward tensors shared by every layer."""

    starts: torch.Tensor | None
    cos: torch.Tensor
    sin: torch.Tensor
    mask: torch.Tensor | BlockMask | None
    cache: YuanCache | None
    memory_starts: torch.Tensor | None
    sdpa_backends: list[SDPBackend] | None = None


class YuanModel(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.rope_theta = float(getattr(config, "rope_theta", 10000.0))
        self.gradient_checkpointing = False
        # What the plain forward does at `<eod>` (module docstring). Configs without the
        # flags get the value of the real Yuan2 configs, which cotrain also writes.
        eod = getattr(config, "eod_token_id", None)
        self.eod_token_id: int | None = getattr(config, "eod_token", None) if eod is None else eod
        self.reset_attention_mask = bool(getattr(config, "reset_attention_mask", True))
        self.reset_position_ids = bool(getattr(config, "reset_position_ids", True))
        #: SDPA backends of unpacked causal attention on Hopper GPUs, in priority order
        #: (None: PyTorch's default order). One list object, so compiled layers see the
        #: same constant every forward.
        self.causal_sdpa_backends: list[SDPBackend] | None = list(CAUSAL_SDPA_BACKENDS)

    def forward(self, input_ids: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None, cache: YuanCache | None = None
                ) -> torch.Tensor:
        x = self.embed_tokens(input_ids)
        ctx = self._context(input_ids, x.dtype, attention_mask, segment_ids, cache)
        for i, layer in enumerate(self.layers):
            if self.gradient_checkpointing and self.training:
                x = checkpoint(layer, x, ctx, i, use_reentrant=False)
            else:
                x = layer(x, ctx, i)
        return self.norm(x)

    def _context(self, input_ids: torch.Tensor, dtype: torch.dtype, attention_mask: torch.Tensor | None,
                 segment_ids: torch.Tensor | None, cache: YuanCache | None) -> _Context:
        """Start flags, rotary positions and the attention mask for this forward.

        `attention_mask` (B, S) or (B, T) marks real tokens with 1 and padding with 0
        (HF convention); `segment_ids` (B, S) numbers the examples of a packed row.
        """
        b, s = input_ids.shape
        device = input_ids.device
        past = 0 if cache is None else cache.length
        # A cache with a past knows whether its newest inputs were real, and the next positions.
        lf_valid = next_pos = None
        if cache is not None and past:
            lf_valid, next_pos = cache.lf_valid, cache.next_pos
            assert lf_valid is not None and next_pos is not None
        if attention_mask is not None:
            valid = attention_mask[:, -s:].to(device=device, dtype=torch.bool)
        else:
            valid = torch.ones(b, s, dtype=torch.bool, device=device)
        plain = attention_mask is None and segment_ids is None and past == 0

        # A token starts a sequence when the token before it is padding (or absent)
        # or belongs to another packed example.
        before = lf_valid[:, -1:] if lf_valid is not None else torch.zeros(b, 1, dtype=torch.bool, device=device)
        starts = ~torch.cat((before, valid[:, :-1]), dim=1)
        if segment_ids is not None:
            starts[:, 1:] |= segment_ids[:, 1:] != segment_ids[:, :-1]

        idx = torch.arange(s, device=device).expand(b, s)
        if next_pos is not None:
            positions = next_pos[:, None] + idx
        else:
            first = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
            positions = idx - first
        cos, sin = rotary_cos_sin(positions, self.head_dim, self.rope_theta, dtype)

        # `seq` numbers the spans that attention keeps apart: the sequences of a packed or
        # padded row, or the `<eod>`-closed documents of a plain one (None: one causal span).
        seq = None if plain else torch.cumsum(starts.long(), dim=1)
        eod = self.eod_token_id if plain and self._masks_at_eod() else None
        if eod is not None:
            seq = self._eod_documents(input_ids, eod)
        mask: torch.Tensor | BlockMask | None = None
        if seq is not None and not past and device.type == "cuda":
            mask = _document_block_mask(seq, valid)
        elif seq is not None:
            allowed = (seq[:, :, None] == seq[:, None, :]) & valid[:, None, :]
            allowed &= torch.ones(s, s, dtype=torch.bool, device=device).tril()
            # Every query sees itself, so rows of padding never softmax over nothing.
            allowed |= torch.eye(s, dtype=torch.bool, device=device)
            if cache is not None and past:
                allowed = cache.key_mask(allowed, seq, valid)
            mask = allowed[:, None]

        memory_starts = None
        if cache is not None:
            if lf_valid is not None:
                # The older remembered input has nothing before it; the newer one
                # starts a sequence when the older one is padding.
                memory_starts = torch.stack((torch.ones_like(lf_valid[:, 0]), ~lf_valid[:, 0]), 1)
            cache.advance(valid, positions)
            if eod is not None:
                cache.hide_keys(_after_last_eod(input_ids, eod))
        return _Context(starts, cos, sin, mask, cache, memory_starts,
                        _sdpa_backends(device, self.causal_sdpa_backends))

    def _masks_at_eod(self) -> bool:
        """Whether the plain forward stops attention at `<eod>`, as the reference decides it."""
        return (self.eod_token_id is not None and self.reset_attention_mask
                and (self.training or self.reset_position_ids))

    def _eod_documents(self, input_ids: torch.Tensor, eod: int) -> torch.Tensor | None:
        """(B, S) number of `<eod>`s before each token, or None when no `<eod>` masks anything.

        An `<eod>` in the last column closes the row and hides nothing from it, so a
        single `prompt<sep>answer<eod>` row keeps the unmasked causal kernel.
        """
        before_last = input_ids[:, :-1].eq(eod)
        # The one host sync of this path: a plain row without a cutting `<eod>` must not
        # pay for a mask (dense on CPU, a FlexAttention block mask on GPUs).
        if not bool(before_last.any()):
            return None
        return F.pad(torch.cumsum(before_last, dim=1), (1, 0))


def _after_last_eod(input_ids: torch.Tensor, eod_id: int) -> torch.Tensor:
    """(B, S) True for the tokens after each row's last `<eod>` (all of them when there is none)."""
    is_eod = input_ids == eod_id
    seen = torch.cumsum(is_eod, dim=1)
    # A key stays visible to later tokens when no `<eod>` lies at or after it.
    return seen - is_eod.long() == seen[:, -1:]


class YuanCache:
    """Per-layer keys, values and the last two LFA inputs, for incremental decoding.

    `key_valid` (B, T) marks real (not padding) keys; `lf_valid` (B, 2) marks
    whether the two remembered LFA inputs are real tokens; `next_pos` (B,) is the
    rotary position of the next token of each row.

    A cache grows by appending each step's keys, and rows can leave it (`select`).
    After `preallocate(extra)` it stops growing: keys and values live in
    (B, N, T_max, D) buffers written at `slot` (a device tensor that `step_done`
    advances in place), and attention masks the slots not yet written. Every decode
    step then has the same shapes and tensor addresses, so it can be captured once as
    a CUDA graph and replayed per token (`trainer.generation`). Rows never leave a
    preallocated cache; finished rows keep decoding and are ignored.
    """

    def __init__(self, num_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.lf_inputs: list[torch.Tensor | None] = [None] * num_layers
        self.key_valid: torch.Tensor | None = None
        self.lf_valid: torch.Tensor | None = None
        self.next_pos: torch.Tensor | None = None
        #: The slot the next token's keys go to, once preallocated (None: appending).
        self.slot: torch.Tensor | None = None

    @property
    def length(self) -> int:
        """Cached positions; preallocated, the buffers' length (then only ever asked "is there a past?")."""
        return 0 if self.key_valid is None else self.key_valid.shape[1]

    def remember_lf_inputs(self, layer: int, x: torch.Tensor) -> torch.Tensor | None:
        """Store the last two LFA inputs of this layer; return the two stored before (or None)."""
        memory = self.lf_inputs[layer]
        prior = memory if memory is not None else x.new_zeros(x.shape[0], 2, x.shape[2])
        recent = torch.cat((prior, x), dim=1)[:, -2:]
        if memory is not None and self.slot is not None:
            # In place, at a fixed address; what was there is handed back as a copy.
            kept = memory.clone()
            memory.copy_(recent)
            return kept
        self.lf_inputs[layer] = recent
        return memory

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's keys and values (B, N, S, D); return all of them."""
        keys, values = self.keys[layer], self.values[layer]
        if self.slot is not None and keys is not None and values is not None:
            keys.index_copy_(2, self.slot, k)
            values.index_copy_(2, self.slot, v)
            return keys, values
        if keys is not None and values is not None:
            k = torch.cat((keys, k), dim=2)
            v = torch.cat((values, v), dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def key_mask(self, allowed: torch.Tensor, seq: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, S, T) attention mask over cached + new keys, given the new-token mask `allowed`."""
        assert self.key_valid is not None, "key_mask needs a past"
        b, s, _ = allowed.shape
        if self.slot is not None:
            # One token per row, written at the slot; unwritten slots stay masked.
            self.key_valid.index_copy_(1, self.slot, valid)
            return self.key_valid[:, None, :].expand(b, s, self.key_valid.shape[1])
        old = self.key_valid[:, None, :].expand(b, s, self.key_valid.shape[1])
        # Cached keys all belong to the row's one sequence (no packing with a cache);
        # a query after a start inside this chunk belongs to a new sequence.
        return torch.cat((old & (seq[:, :, None] == 0), allowed), dim=2)

    def advance(self, valid: torch.Tensor, positions: torch.Tensor) -> None:
        """Record the new tokens' validity and the next rotary position."""
        b = valid.shape[0]
        prev = self.lf_valid if self.lf_valid is not None else valid.new_zeros(b, 2)
        lf_valid = torch.cat((prev, valid), dim=1)[:, -2:]
        next_pos = positions[:, -1] + 1
        if self.slot is not None and self.lf_valid is not None and self.next_pos is not None:
            # `key_mask` wrote the keys' validity at the slot; the slot moves on in `step_done`.
            self.lf_valid.copy_(lf_valid)
            self.next_pos.copy_(next_pos)
            return
        self.lf_valid, self.next_pos = lf_valid, next_pos
        self.key_valid = valid if self.key_valid is None else torch.cat((self.key_valid, valid), dim=1)

    def hide_keys(self, visible: torch.Tensor) -> None:
        """Hide the cached keys where `visible` (B, T) is False from every later query.

        Only attention changes: the LFA memory and the positions stay as they are.
        """
        assert self.key_valid is not None, "hide_keys needs a past"
        self.key_valid = self.key_valid & visible

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the given batch rows (used when finished rows leave a batch)."""
        if self.slot is not None:
            raise RuntimeError("a preallocated YuanCache keeps its rows (finished rows are ignored, not dropped)")
        for store in (self.keys, self.values, self.lf_inputs):
            for i, t in enumerate(store):
                if t is not None:
                    store[i] = t.index_select(0, rows)
        for name in ("key_valid", "lf_valid", "next_pos"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.index_select(0, rows))

    def preallocate(self, extra: int) -> None:
        """Stop growing: room for `extra` more tokens in fixed buffers (class docstring), after a prefill."""
        key_valid, lf_valid, next_pos = self.key_valid, self.lf_valid, self.next_pos
        if key_valid is None or lf_valid is None or next_pos is None or self.slot is not None:
            raise RuntimeError("preallocate a cache once, after the prefill")
        b, t0 = key_valid.shape
        for store in (self.keys, self.values):
            for i, t in enumerate(store):
                if t is not None:
                    buffer = t.new_zeros(b, t.shape[1], t0 + extra, t.shape[3])
                    buffer[:, :, :t0] = t
                    store[i] = buffer
        self.lf_inputs = [None if t is None else t.clone() for t in self.lf_inputs]
        self.key_valid = key_valid.new_zeros(b, t0 + extra)
        self.key_valid[:, :t0] = key_valid
        self.lf_valid, self.next_pos = lf_valid.clone(), next_pos.clone()
        self.slot = torch.full((1,), t0, dtype=torch.long, device=key_valid.device)

    def step_done(self) -> None:
        """A preallocated cache's step has written its slot: the next token takes the next one."""
        if self.slot is not None:
            self.slot.add_(1)


@dataclasses.dataclass
class CausalLMOutput:
    """What the model returns: logits (B, S, V) and, when asked, the cache."""

    logits: torch.Tensor
    past_key_values: YuanCache | None = None


class YuanForCausalLM(nn.Module):
    """Decoder plus output head; parameter names follow the HF Yuan2 checkpoints."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.model = YuanModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def init_weights(self, seed: int | None = None) -> None:
        """Random initialisation (normal, std initializer_range), for new or tiny models."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        std = self.config.initializer_range
        for name, p in self.named_parameters():
            with torch.no_grad():
                if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                    p.fill_(1.0)
                elif name.endswith(".bias"):
                    p.zero_()
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) * std)

    def forward(self, input_ids: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None, past_key_values: YuanCache | None = None,
                use_cache: bool = False) -> CausalLMOutput:
        """Logits (B, S, V), and the cache when asked (`use_cache`, or `past_key_values` given).

        Training computes no full logits: `trainer.loss.CausalLMLoss` runs the decoder
        (`self.model`, hidden states) and applies `self.lm_head` chunk by chunk.
        """
        cache = past_key_values
        if use_cache and cache is None:
            cache = YuanCache(len(self.model.layers))
        hidden = self.model(input_ids, attention_mask=attention_mask, segment_ids=segment_ids, cache=cache)
        return CausalLMOutput(logits=self.lm_head(hidden), past_key_values=cache)


__all__ = ["CAUSAL_SDPA_BACKENDS", "IGNORE_INDEX", "MLP", "Attention", "CausalConv", "CausalLMOutput", "DecoderLayer",
           "LocalizedFiltering", "YuanCache", "YuanForCausalLM", "YuanModel", "causal_conv"]
