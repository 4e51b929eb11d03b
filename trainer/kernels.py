"""Triton kernels for the training step on GPUs (imported only where Triton and a GPU are).

`softmax_cross_entropy_grad` is the loss chunk of `trainer.loss`'s fused linear +
cross-entropy: for each row of a (rows x 135,040) bf16 logits chunk it finds the
log-sum-exp in ONE pass (a running max and sum per lane, "online softmax") and
writes weight·(softmax - onehot(target)) in a second, so the chunk is read twice
and written once, the least this maths allows. Inductor's kernel for the same
maths read it three times at about half the card's memory bandwidth
(docs/perf.md).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

#: Columns a program handles per step of its loop over a row.
_BLOCK = 4096


@triton.jit
def _ce_grad_kernel(logits_ptr, grad_ptr, targets_ptr, weights_ptr, losses_ptr, n_cols,
                    logits_stride, grad_stride, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    src = logits_ptr + row * logits_stride
    dst = grad_ptr + row * grad_stride
    offs = tl.arange(0, BLOCK)
    neg_inf = float("-inf")

    # Pass 1: each lane keeps a running max and a sum of exp(x - max).
    run_max = tl.full([BLOCK], neg_inf, tl.float32)
    run_sum = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + offs
        x = tl.load(src + cols, mask=cols < n_cols, other=neg_inf).to(tl.float32)
        new_max = tl.maximum(run_max, x)
        # A lane that has seen only masked columns stays at (-inf, 0) without NaNs.
        seen = new_max > neg_inf
        run_sum = tl.where(seen, run_sum * tl.exp(run_max - new_max) + tl.exp(x - new_max), 0.0)
        run_max = new_max
    row_max = tl.max(run_max, 0)
    total = tl.sum(tl.where(run_max > neg_inf, run_sum * tl.exp(run_max - row_max), 0.0), 0)
    lse = row_max + tl.log(total)

    target = tl.load(targets_ptr + row)
    weight = tl.load(weights_ptr + row)
    target_logit = tl.load(src + target).to(tl.float32)
    tl.store(losses_ptr + row, (lse - target_logit) * weight)

    # Pass 2: weight * (softmax - 1 at the target), rounded once to the output dtype.
    for start in range(0, n_cols, BLOCK):
        cols = start + offs
        mask = cols < n_cols
        x = tl.load(src + cols, mask=mask, other=0.0).to(tl.float32)
        g = tl.exp(x - lse) * weight
        g = tl.where(cols == target, g - weight, g)
        tl.store(dst + cols, g.to(dst.dtype.element_ty), mask=mask)


def softmax_cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ weight·CE over the rows of `logits` (float32 maths) and its gradient in the logits' dtype.

    Same contract as `trainer.loss.softmax_cross_entropy_grad`: `targets` (rows,)
    int64 class indices, `weights` (rows,) float32.
    """
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    rows, cols = logits.shape
    grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
    losses = torch.empty(rows, dtype=torch.float32, device=logits.device)
    if rows:
        _ce_grad_kernel[(rows,)](logits, grad, targets.contiguous(), weights.float().contiguous(), losses, cols,
                                 logits.stride(0), grad.stride(0), BLOCK=_BLOCK, num_warps=8)
    return losses.sum(), grad
