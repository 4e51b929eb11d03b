"""Multi-GPU scaling of our full fine-tune at the Yuan2-2B shape (FSDP2, the trainer's sharding).

    torchrun --standalone --nproc-per-node 1 bench/train_scaling.py --recipe mixed --json one.json
    torchrun --standalone --nproc-per-node 2 bench/train_scaling.py --recipe mixed --json two.json

Each GPU processes `--batch` rows of `--seq` tokens per step (weak scaling, as
data parallelism is used), fused AdamW, compiled decoder layers. Two recipes:
- `mixed` (what `python -m trainer train` does): float32 weights and optimizer
  state, bf16 compute; one GPU runs under autocast unsharded, several GPUs
  shard with FSDP2 (bf16 all-gathers, float32 gradient reduction);
- `bf16` (what bench/train_throughput.py's rows do): bf16 weights and optimizer
  state; one GPU runs unsharded, several shard with FSDP2 in bf16.
One GPU never shards: the ratio is against the best one GPU does with the recipe.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_results import write_results  # bench/ is the script's folder

from trainer.config import preset
from trainer.distributed import barrier, close_world, init_world, shard_model
from trainer.loss import CausalLMLoss
from trainer.model import DecoderLayer, YuanForCausalLM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--recipe", choices=("mixed", "bf16"), default="mixed")
    parser.add_argument("--json")
    args = parser.parse_args()

    world = init_world()
    cfg = preset("yuan2_2b")
    with torch.device(world.device):
        model = YuanForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(1.0) if "norm" in name else p.normal_(0.0, 0.02)
    if args.recipe == "bf16":
        model.to(torch.bfloat16)
    model = CausalLMLoss(model)  # the loss inside the (sharded) root's forward, as the trainer runs it
    for layer in model.modules():
        if isinstance(layer, DecoderLayer):
            layer.compile()
    if world.distributed:
        shard_model(model, DecoderLayer, bf16=args.recipe == "mixed")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.recipe == "mixed" and not world.distributed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    gen = torch.Generator(device=world.device).manual_seed(world.rank)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device=world.device, generator=gen)
    targets = ids.roll(-1, dims=1)
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            torch.cuda.synchronize()
            barrier(world)
            start = time.perf_counter()
        with autocast:
            loss = model(ids, targets=targets)[0] / targets.numel()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    per_gpu = args.steps * args.batch * args.seq / elapsed
    total = per_gpu * world.size
    if world.is_main:
        row = {"name": f"ours_full_{args.recipe}_{world.size}gpu", "recipe": args.recipe,
               "sharding": "fsdp2" if world.distributed else "none", "world_size": world.size,
               "tokens_per_s": round(total, 1), "tokens_per_s_per_gpu": round(per_gpu, 1),
               "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
        print(json.dumps(row), flush=True)
        if args.json:
            write_results(args.json, [row], seq=args.seq, batch=args.batch)
    del model, opt, loss  # the sharded model holds the process group (close_world)
    close_world(world)


if __name__ == "__main__":
    main()
