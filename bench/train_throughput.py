"""Training throughput of the Yuan2-2B shape on one GPU: the reference-style baseline vs ours.

    python bench/train_throughput.py --json bench/results/h100-YYYYMMDD.json

Every row is measured in this one process, on the same card, with the same
shape (default: sequence 4096, batch 2, bf16 parameters, AdamW): baseline_full,
baseline_lora (peft r=16 on all linear layers), ours_full, ours_lora, ours_no_lfa
(our model with LFA removed, to price LFA), plus ours_full at sequence 8192 for
memory, and batched generation tokens/s at batch 1 and 32.

A row may name a variant after a colon, to price a choice in the same run:
`ours_full:default_sdpa` (PyTorch's default attention backend order instead of
cuDNN first), `ours_lora:cd_tuning` (inductor's coordinate-descent tuning of
the generated kernels), `ours_lora:max_autotune` (inductor's autotuned Triton GEMMs,
which can fuse neighbouring elementwise work into the GEMM, against cuBLAS),
`ours_full:scatter_ce` (the loss gradient as a scatter-add into the float32 softmax,
as before 2026-11-28), `ours_full:inductor_ce` (the loss chunk compiled by
inductor instead of the Triton kernel of `trainer.kernels`),
`ours_lora:plain_lora` (LoRA's rank-r products as separate GEMMs, as before the
fused layout of `trainer.lora`), `ours_lora:fuse_down` (down_proj fused too),
`ours_full:cudagraphs` (each compiled layer in inductor's reduce-overhead mode).

MFU counts 6N + 6·L·H·S FLOPs per token for full fine-tunes and 4N + 6·L·H·S for
LoRA (frozen weights get no weight gradient), N without the embedding lookup,
against 790 TFLOP/s (a large bf16 GEMM on an H100).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from baseline_model import BaselineYuan  # noqa: E402
from gpu_results import write_results  # noqa: E402

from trainer.config import preset  # noqa: E402
from trainer.lora import fuse, wrap_lora  # noqa: E402
from trainer.loss import CausalLMLoss, softmax_cross_entropy_grad  # noqa: E402
from trainer.model import DecoderLayer, YuanForCausalLM  # noqa: E402
from trainer.runconfig import LoraSection  # noqa: E402

PEAK_FLOPS = 790e12
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


VARIANTS = ("default_sdpa", "cd_tuning", "max_autotune", "scatter_ce", "inductor_ce", "plain_lora",
            "fuse_down", "cudagraphs")


def _scatter_ce_grad(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor):
    """The loss chunk's gradient as computed before 2026-11-28 (variant `scatter_ce`)."""
    full = logits.float()
    lse = torch.logsumexp(full, dim=-1)
    loss = ((lse - full.gather(1, targets[:, None]).squeeze(1)) * weights).sum()
    grad = (full - lse[:, None]).exp()
    grad = grad.scatter_add(1, targets[:, None], grad.new_full((targets.shape[0], 1), -1.0))
    return loss, (grad * weights[:, None]).to(logits.dtype)


class _NoLFA(nn.Module):
    def forward(self, x: torch.Tensor, *_: object) -> torch.Tensor:
        return x


def _init_fast(model: nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02)


def build(row: str, cfg, device: torch.device) -> nn.Module:
    """The row's model; ours comes as the trainer trains it, a `CausalLMLoss` around the model."""
    name, _, variant = row.partition(":")
    with torch.device(device):
        model = BaselineYuan(cfg) if name.startswith("baseline") else YuanForCausalLM(cfg)
    _init_fast(model)
    model.to(torch.bfloat16)
    if name.startswith("ours") and variant == "default_sdpa":  # PyTorch's backend order, not cuDNN first
        model.model.causal_sdpa_backends = None
    if name.startswith("ours_no_lfa"):
        for layer in model.model.layers:
            layer.self_attn.lf_gate = _NoLFA()
    if name.startswith("ours"):
        # Variant cudagraphs: each compiled layer replayed as CUDA graphs (fewer launch gaps).
        mode = "reduce-overhead" if variant == "cudagraphs" else None
        for layer in model.modules():
            if isinstance(layer, DecoderLayer):
                layer.compile(mode=mode)
    if name == "baseline_lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=LORA_TARGETS))
    elif name == "ours_lora":  # the trainer's own LoRA layers; saved adapters are standard peft
        # lora.fused: auto, as the trainer resolves it on one GPU (fused), unless the variant says.
        fused = False if variant in ("plain_lora", "fuse_down") else "auto"
        model = wrap_lora(model, LoraSection(r=16, alpha=32, targets=LORA_TARGETS), fused=fused, device=device)
        if variant == "fuse_down":  # down_proj fused too, against the rule that keeps it plain
            fuse(model, narrowing=True)
    if name.startswith("ours"):
        # The loss chunk: the Triton kernel, or (variants) inductor's, of the torch maths
        # or of the scatter-add spelling used before 2026-11-28.
        maths = _scatter_ce_grad if variant == "scatter_ce" else softmax_cross_entropy_grad
        model = CausalLMLoss(model, triton=variant not in ("scatter_ce", "inductor_ce"), maths=maths)
    return model


@contextlib.contextmanager
def _variant(row: str):
    """Apply a row's variant while it is built, compiled (first steps) and measured."""
    variant = row.partition(":")[2]
    if variant and variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
    # Inductor's settings are torch's process-wide flags; the trainer's choices are
    # parameters of the model and the loss (`build`).
    inductor = torch._inductor.config
    saved = inductor.coordinate_descent_tuning, inductor.max_autotune
    inductor.coordinate_descent_tuning = variant == "cd_tuning" or saved[0]
    inductor.max_autotune = variant == "max_autotune" or saved[1]
    try:
        yield
    finally:
        inductor.coordinate_descent_tuning, inductor.max_autotune = saved


def step_fn(row: str, model: nn.Module, ids: torch.Tensor, targets: torch.Tensor):
    name = row.partition(":")[0]
    if name.startswith("baseline"):
        return lambda: model(ids, targets)
    segments = None
    if name.endswith("packed"):  # 8 examples per row: FlexAttention with a document mask
        segments = (torch.arange(ids.shape[1], device=ids.device) * 8 // ids.shape[1]).expand_as(ids)
    # Ours returns the loss sum; divide by the token count like the baseline's mean.
    return lambda: model(ids, segment_ids=segments, targets=targets)[0] / targets.numel()


def measure(name: str, cfg, seq: int, batch: int, steps: int, warmup: int, device: torch.device) -> dict:
    with _variant(name):
        return _measure(name, cfg, seq, batch, steps, warmup, device)


def _measure(name: str, cfg, seq: int, batch: int, steps: int, warmup: int, device: torch.device) -> dict:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = build(name, cfg, device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=True)
    gen = torch.Generator(device=device).manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), device=device, generator=gen)
    targets = ids.roll(-1, dims=1)
    run = step_fn(name, model, ids, targets)
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        for i in range(warmup + steps):
            if i == warmup:
                torch.cuda.synchronize()
                start = time.perf_counter()
            loss = run()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
    tokens_per_s = steps * batch * seq / elapsed
    n = _n_params(cfg)
    weight_passes = 4 if name.partition(":")[0].endswith("lora") else 6
    per_token = weight_passes * n + 6 * cfg.num_hidden_layers * cfg.hidden_size * seq
    row = {"name": name, "tokens_per_s": round(tokens_per_s, 1), "mfu": round(tokens_per_s * per_token / PEAK_FLOPS, 4),
           "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2), "seq": seq, "batch": batch,
           "final_loss": round(float(loss.detach()), 4)}
    del model, opt, loss, run
    gc.collect()
    torch.cuda.empty_cache()
    return row


def _n_params(cfg) -> int:
    """Parameters that do matrix work per token: all, less an untied embedding table (a lookup)."""
    with torch.device("meta"):
        model = YuanForCausalLM(cfg)
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return total if cfg.tie_word_embeddings else total - model.model.embed_tokens.weight.numel()


def measure_generation(cfg, device: torch.device, batch: int, prompt_len: int, new_tokens: int,
                       repeats: int = 3) -> dict:
    from trainer.generation import SamplingConfig, generate

    with torch.device(device):
        model = YuanForCausalLM(cfg)
    _init_fast(model)
    model.to(torch.bfloat16).eval()
    prompts = torch.randint(0, cfg.vocab_size, (batch, prompt_len)).tolist()
    sampling = SamplingConfig(max_new_tokens=new_tokens)
    # An end-of-document id the model never produces, so every row runs to the budget.
    eod = cfg.vocab_size
    # One untimed call of the same shape first (allocator, cuBLAS handles, kernel
    # selection), then the median of timed repeats: a single cold call was seen
    # to vary several-fold between runs.
    generate(model, prompts, eod_id=eod, sampling=sampling, batch_size=batch)
    rates = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = generate(model, prompts, eod_id=eod, sampling=sampling, batch_size=batch)
        torch.cuda.synchronize()
        rates.append(sum(len(o) for o in out) / (time.perf_counter() - start))
    del model
    torch.cuda.empty_cache()
    rates.sort()
    return {"name": f"generate_batch{batch}", "tokens_per_s": round(rates[len(rates) // 2], 1),
            "tokens_per_s_min": round(rates[0], 1), "tokens_per_s_max": round(rates[-1], 1),
            "repeats": repeats, "batch": batch, "prompt_len": prompt_len, "new_tokens": new_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rows", default="baseline_full,baseline_lora,ours_full,ours_lora,ours_no_lfa")
    parser.add_argument("--long-seq", type=int, default=8192, help="also run ours_full at this length (0: skip)")
    parser.add_argument("--generation", action="store_true", help="also measure batched generation")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    device = torch.device("cuda")
    # Every row compiles another variant of the same decoder layer code; past dynamo's
    # default of 8 cached variants, later rows would silently run uncompiled.
    torch._dynamo.config.cache_size_limit = 64
    torch._dynamo.config.accumulated_cache_size_limit = 512
    cfg = preset("yuan2_2b")
    rows = []
    for name in filter(None, args.rows.split(",")):
        rows.append(measure(name, cfg, args.seq, args.batch, args.steps, args.warmup, device))
        print(json.dumps(rows[-1]), flush=True)
    if args.long_seq:
        row = measure("ours_full", cfg, args.long_seq, 1, max(2, args.steps // 2), 2, device)
        row["name"] = f"ours_full_seq{args.long_seq}"
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.generation:
        for batch in (1, 32):
            rows.append(measure_generation(cfg, device, batch, 128, 128))
            print(json.dumps(rows[-1]), flush=True)

    print(f"\n{'name':<22}{'tokens/s':>12}{'MFU':>8}{'peak GiB':>10}")
    for r in rows:
        mfu = f"{r['mfu']:.1%}" if "mfu" in r else ""
        print(f"{r['name']:<22}{r['tokens_per_s']:>12,.0f}{mfu:>8}{r.get('peak_gib', ''):>10}")
    if args.json:
        write_results(args.json, rows, seq=args.seq, batch=args.batch)


if __name__ == "__main__":
    main()
