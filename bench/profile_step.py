"""Where a training step's GPU time goes: torch.profiler over a few steps of one benchmark row.

    python3 bench/profile_step.py --row ours_lora [--seq 4096 --batch 2]

Prints the kernels with the most GPU time and their share of the step; with
`--by-shape`, also the operators (matrix products, attention, custom ops) by input
shapes with the GPU time of the kernels they launched; writes a Chrome trace with
`--trace PATH`. Uses the same model builds as train_throughput.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from train_throughput import build, step_fn  # noqa: E402

from trainer.config import preset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", default="ours_full")
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--by-shape", action="store_true")
    parser.add_argument("--trace")
    args = parser.parse_args()

    device = torch.device("cuda")
    cfg = preset("yuan2_2b")
    model = build(args.row, cfg, device)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=True)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device=device)
    run = step_fn(args.row, model, ids, ids.roll(-1, dims=1))

    def step() -> None:
        run().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    activities = [ProfilerActivity.CUDA] + ([ProfilerActivity.CPU] if args.by_shape else [])
    with profile(activities=activities, record_shapes=args.by_shape) as prof:
        for _ in range(2):
            step()
        torch.cuda.synchronize()
    # Self device time: each kernel counted once, not again under the ops that launched it.
    events = [e for e in prof.key_averages() if e.self_device_time_total > 0]
    total = sum(e.self_device_time_total for e in events)
    print(f"{args.row}: {total / 2 / 1000:.1f} ms of GPU kernel time per step")
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[: args.top]:
        print(f"{e.self_device_time_total / 2 / 1000:9.2f} ms {100 * e.self_device_time_total / total:5.1f}%  "
              f"x{e.count // 2:<5} {e.key[:110]}")
    if args.by_shape:
        ops = [e for e in prof.key_averages(group_by_input_shape=True)
               if e.device_time_total > 0 and (e.key.startswith(("aten::mm", "aten::addmm", "aten::bmm", "cotrain::"))
                                              or "attention" in e.key)]
        print("\noperators by input shapes (GPU time of their kernels, per step)")
        for e in sorted(ops, key=lambda e: -e.device_time_total)[: args.top]:
            shapes = str(e.input_shapes)[:120]
            print(f"{e.device_time_total / 2 / 1000:9.2f} ms x{e.count // 2:<5} {e.key[:40]:<40} {shapes}")
    if args.trace:
        prof.export_chrome_trace(args.trace)


if __name__ == "__main__":
    main()
