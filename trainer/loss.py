"""The fine-tuning loss: weighted token cross-entropy, chunk by chunk from the decoder's hidden states.

A batch is a dict of (B, S) tensors built by `trainer.data`:
- `input_ids`: tokens; `segment_ids`: example number inside a packed row (-1 on padding);
- `targets`: the token each position must predict, -100 where nothing is learned
  (prompt, `<sep>`, padding, the last token of an example);
- `weights`: float loss weight per position (the example's weight on targets, 0 elsewhere).

`CausalLMLoss(lm)` is the module training runs, wraps and shards: its forward runs
the decoder and the loss, so the loss is computed inside a module forward (FSDP
and DDP hooks run around it), and it returns the *sum* of weighted losses with the
sum of weights: gradient accumulation and data parallelism divide by the global
total once and get exactly the loss of one big batch.

The loss never builds the full logits: the output head runs on target rows only,
a chunk at a time, and with gradients on, each chunk's gradient is computed in the
forward (`_FusedLinearCrossEntropy`), so a 135,040-token vocabulary stays
affordable. This is training code only: the model file shipped in releases
(`trainer/model.py`) has none of it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .model import IGNORE_INDEX, YuanForCausalLM

#: Target rows sent through the output head at once (bounds the float32 logits alive).
LOSS_CHUNK = 4096

#: (logits chunk, targets, weights) -> (Σ weight·CE, its gradient in the logits' dtype).
ChunkLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def softmax_cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ weight·CE of a chunk of logits (float32 maths), and its gradient in the logits' dtype.

    The gradient is weight·softmax everywhere, written once in the logits' dtype, and
    weight·(p - 1) put at the targets afterwards: a scatter-add into the full-width
    float32 softmax instead kept it in memory between two kernels. On GPUs the trainer
    runs `trainer.kernels`' version of this instead (two reads of the logits, not three).
    """
    full = logits.float()
    lse = torch.logsumexp(full, dim=-1)
    target_logit = full.gather(1, targets[:, None]).squeeze(1)
    loss = ((lse - target_logit) * weights).sum()
    grad = ((full - lse[:, None]).exp() * weights[:, None]).to(logits.dtype)
    at_target = ((target_logit - lse).exp() - 1.0) * weights
    rows = torch.arange(targets.shape[0], device=targets.device)
    return loss, grad.index_put((rows, targets), at_target.to(logits.dtype))


@functools.cache
def chunk_kernel(device_type: str, triton: bool = True, maths: ChunkLoss = softmax_cross_entropy_grad) -> ChunkLoss:
    """The function that computes one loss chunk on this device type.

    On GPUs: the Triton kernel of `trainer.kernels` when `triton` and Triton is there;
    otherwise `maths` compiled (one kernel pair reads the bf16 logits instead of six
    float32 passes; chunks vary in length, hence dynamic shapes). Elsewhere `maths` as is.
    """
    if device_type != "cuda":
        return maths
    if triton:
        try:
            from .kernels import softmax_cross_entropy_grad as triton_kernel
        except ImportError:
            pass
        else:
            return triton_kernel
    return torch.compile(maths, dynamic=True)


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Σ weight·CE(hidden @ Wᵀ, target), with its gradients computed chunk by chunk in forward.

    Holding (tokens x 135,040) float32 logits for backward would cost more memory
    than the whole decoder's activations; here only one chunk of logits is ever
    alive, and backward merely scales the gradients already computed.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                dtype: torch.dtype, kernel: ChunkLoss, chunk: int) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            h_all = hidden.to(dtype)
            grad_h = torch.empty_like(h_all) if hidden.requires_grad else None
            # Accumulate the head's gradient in float32 when that is the compute dtype
            # (CPU); in bf16 the few chunk sums lose nothing that matters.
            grad_w = torch.zeros_like(w) if weight.requires_grad else None
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            for start in range(0, h_all.shape[0], chunk):
                h = h_all[start:start + chunk]
                loss, grad = kernel(h @ w.T, targets[start:start + chunk], weights[start:start + chunk])
                total += loss
                if grad_h is not None:
                    grad_h[start:start + chunk] = grad @ w
                if grad_w is not None:
                    grad_w.addmm_(grad.T, h)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_h, grad_w = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        return (None if grad_h is None else (grad_h * grad_out).to(h_dtype),
                None if grad_w is None else (grad_w * grad_out).to(w_dtype), None, None, None, None, None)


def chunked_cross_entropy(hidden: torch.Tensor, head: nn.Module, targets: torch.Tensor, weights: torch.Tensor, *,
                          triton: bool = True, maths: ChunkLoss = softmax_cross_entropy_grad,
                          chunk: int = LOSS_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ weight·CE(head(hidden)) over the target tokens, Σ weight), never holding the full logits.

    `hidden` (B, S, H) hidden states, `targets` (B, S; -100 = no loss), `weights` (B, S).
    With gradients wanted and a plain `nn.Linear` head, the chunks run in
    `_FusedLinearCrossEntropy` (on GPUs with `chunk_kernel(triton, maths)`); otherwise
    (evaluation) plain head + cross-entropy, chunk by chunk.
    """
    targets = targets.reshape(-1)
    # Rows without a target (prompts, padding) skip the output head. Finding them
    # waits for the GPU once (the count); three boolean masks would wait three times.
    rows = (targets != IGNORE_INDEX).nonzero().squeeze(1)
    hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows)
    targets, weights = targets.index_select(0, rows), weights.reshape(-1).index_select(0, rows).float()
    if torch.is_grad_enabled() and type(head) is nn.Linear and (hidden.requires_grad or head.weight.requires_grad):
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        kernel = chunk_kernel(device, triton, maths)
        loss = _FusedLinearCrossEntropy.apply(hidden, head.weight, targets, weights, dtype, kernel, chunk)
        return loss, weights.sum()
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk):
        end = start + chunk
        logits = head(hidden[start:end]).float()
        losses = F.cross_entropy(logits, targets[start:end], reduction="none")
        total = total + (losses * weights[start:end]).sum()
    return total, weights.sum()


class CausalLMLoss(nn.Module):
    """A causal LM and its training loss as one module: forward(batch tensors) -> (Σ w·CE, Σ w).

    It holds the LM's decoder and head under the LM's own attribute names (`model`,
    `lm_head`), not the LM itself: its parameters, state dict and optimizer state
    are named exactly as the LM's are, so checkpoints, resumed optimizer state and
    adapter names do not depend on the wrapper. The LM keeps working on its own
    (generation, export); both see the same modules.

    `triton` and `maths` pick the loss chunk's kernel on GPUs (`chunk_kernel`):
    benchmarks pass them to price the alternatives.
    """

    def __init__(self, lm: YuanForCausalLM, *, triton: bool = True, maths: ChunkLoss = softmax_cross_entropy_grad,
                 chunk: int = LOSS_CHUNK) -> None:
        super().__init__()
        self.config = lm.config
        self.model = lm.model
        self.lm_head = lm.lm_head
        self.triton, self.maths, self.chunk = triton, maths, chunk

    def forward(self, input_ids: torch.Tensor, *, targets: torch.Tensor, weights: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`targets` (B, S; -100 = no loss) and `weights` (B, S; default 1) as in a `trainer.data` batch."""
        hidden = self.model(input_ids, segment_ids=segment_ids)
        if weights is None:
            weights = torch.ones_like(targets, dtype=torch.float32)
        return chunked_cross_entropy(hidden, self.lm_head, targets, weights, triton=self.triton, maths=self.maths,
                                     chunk=self.chunk)


def weighted_token_loss(model: nn.Module, batch: dict[str, torch.Tensor]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of weight * cross-entropy over target tokens, sum of weights) of one batch.

    `model` is a `CausalLMLoss`, or a causal LM (wrapped here, for evaluation).
    """
    net = model if isinstance(model, CausalLMLoss) else CausalLMLoss(model)  # type: ignore[arg-type]
    return net(batch["input_ids"], segment_ids=batch.get("segment_ids"), targets=batch["targets"],
               weights=batch["weights"])


__all__ = ["LOSS_CHUNK", "CausalLMLoss", "chunk_kernel", "chunked_cross_entropy", "softmax_cross_entropy_grad",
           "weighted_token_loss"]
