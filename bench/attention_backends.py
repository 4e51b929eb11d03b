"""Causal attention at the Yuan2-2B training shape: forward + backward time of each SDPA backend.

    python3 bench/attention_backends.py [--seq 4096 --batch 2] [--json PATH]

q and k are laid out as the model makes them (per-head 2·D chunks of one tensor,
so not contiguous). Each backend's output and gradients are compared with a
float32 computation of the same attention, to show that a faster kernel is not
a wronger one.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from gpu_results import write_results
from torch.nn.attention import SDPBackend, sdpa_kernel


def _inputs(batch: int, seq: int, heads: int, dim: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator(device="cuda").manual_seed(0)
    qk = torch.randn(batch, seq, heads, 2 * dim, device="cuda", dtype=dtype, generator=gen)
    q, k = qk.transpose(1, 2).chunk(2, dim=-1)
    v = torch.randn(batch, seq, heads, dim, device="cuda", dtype=dtype, generator=gen).transpose(1, 2)
    return tuple(t.detach().requires_grad_(True) for t in (q, k, v))


def _run(backend: SDPBackend, q, k, v, grad) -> tuple[torch.Tensor, ...]:
    for t in (q, k, v):
        t.grad = None
    with sdpa_kernel([backend]):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out.backward(grad)
    return out, q.grad, k.grad, v.grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args()

    q, k, v = _inputs(args.batch, args.seq, args.heads, args.dim, torch.bfloat16)
    grad = torch.randn_like(q)
    ref = _run(SDPBackend.MATH, *(t.detach().float().requires_grad_(True) for t in (q, k, v)), grad.float())
    # Causal attention: half of the 4·B·N·S²·D forward multiply-adds, 2.5x that for backward.
    flops = 3.5 * 4 * args.batch * args.heads * args.seq**2 * args.dim / 2
    rows = []
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
        try:
            got = _run(backend, q, k, v, grad)
        except RuntimeError as exc:
            rows.append({"name": backend.name.lower(), "error": str(exc).splitlines()[0][:200]})
            print(json.dumps(rows[-1]), flush=True)
            continue
        err = [round(float((g.detach().float() - r.detach()).abs().max() / r.detach().abs().max()), 5)
               for g, r in zip(got, ref, strict=True)]
        for _ in range(3):
            _run(backend, q, k, v, grad)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(args.iters):
            _run(backend, q, k, v, grad)
        end.record()
        torch.cuda.synchronize()
        ms = start.elapsed_time(end) / args.iters
        rows.append({"name": backend.name.lower(), "ms_fwd_bwd": round(ms, 3), "tflops": round(flops / ms / 1e9, 1),
                     "rel_err_out_dq_dk_dv": err})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        write_results(args.json, rows, shape={"batch": args.batch, "heads": args.heads, "seq": args.seq,
                                              "dim": args.dim})


if __name__ == "__main__":
    main()
