"""Multi-GPU scaling of our full fine-tune at the Yuan2-2B shape (FSDP2, the trainer's sharding).

    torchrun --standalone --nproc-per-node 1 bench/train_scaling.py --json one.json
    torchrun --standalone --nproc-per-node 2 bench/train_scaling.py --json two.json

Each GPU processes `--batch` rows of `--seq` tokens per step (weak scaling, as
data parallelism is used); fp32 master weights, bf16 compute (FSDP2 mixed
precision), fused AdamW, compiled decoder layers. The same code runs for every
world size, world size 1 included, so the ratio isolates communication cost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.config import preset
from trainer.distributed import init_world, shard_model
from trainer.model import DecoderLayer, YuanForCausalLM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()

    os.environ.setdefault("WORLD_SIZE", "1")
    world = init_world()
    if not dist.is_initialized():  # FSDP2 needs a process group even for one GPU
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29533")
        dist.init_process_group("nccl", rank=0, world_size=1, device_id=world.device)
    cfg = preset("yuan2_2b")
    with torch.device(world.device):
        model = YuanForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(1.0) if "norm" in name else p.normal_(0.0, 0.02)
    for layer in model.modules():
        if isinstance(layer, DecoderLayer):
            layer.compile()
    shard_model(model, DecoderLayer, bf16=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    gen = torch.Generator(device=world.device).manual_seed(world.rank)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device=world.device, generator=gen)
    targets = ids.roll(-1, dims=1)
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            torch.cuda.synchronize()
            dist.barrier()
            start = time.perf_counter()
        loss = model(input_ids=ids, targets=targets).loss / targets.numel()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    per_gpu = args.steps * args.batch * args.seq / elapsed
    total = per_gpu * dist.get_world_size()
    if world.is_main:
        row = {"name": f"ours_full_fsdp2_{dist.get_world_size()}gpu", "world_size": dist.get_world_size(),
               "tokens_per_s": round(total, 1), "tokens_per_s_per_gpu": round(per_gpu, 1),
               "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
        print(json.dumps(row), flush=True)
        if args.json:
            out = {"card": torch.cuda.get_device_name(), "torch": torch.__version__,
                   "date": dt.date.today().isoformat(), "seq": args.seq, "batch": args.batch, "rows": [row]}
            Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
