"""Where a training step's GPU time goes: torch.profiler over a few steps of one benchmark row.

    python3 bench/profile_step.py --row ours_lora [--seq 4096 --batch 2]

Prints the step's wall time (timed outside the profiler), the GPU kernel time in it
(the rest is the GPU waiting: launch overhead, host syncs), the kernels with the most
GPU time and their share of the kernel time; with
`--by-shape`, also the operators (matrix products, attention, custom ops) by input
shapes with the GPU time of the kernels they launched; writes a Chrome trace with
`--trace PATH`. Uses the same model builds as train_throughput.py.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
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
    parser.add_argument("--gaps", type=int, default=0, help="print the N longest GPU idle gaps")
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
    start = time.perf_counter()
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    wall_ms = (time.perf_counter() - start) / 3 * 1000
    activities = [ProfilerActivity.CUDA] + ([ProfilerActivity.CPU] if args.by_shape else [])
    with profile(activities=activities, record_shapes=args.by_shape) as prof:
        for _ in range(2):
            step()
        torch.cuda.synchronize()
    # Kernels only, each counted once: not again under the CPU ops that launched them,
    # and not the GPU-side ranges of annotations (compiled graphs, optimizer step).
    kernels: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    timeline = []
    for e in prof.events():
        if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False):
            kernels[e.name][0] += e.time_range.elapsed_us()
            kernels[e.name][1] += 1
            timeline.append((e.time_range.start, e.time_range.end, e.name))
    total = sum(us for us, _ in kernels.values())
    print(f"{args.row}: {wall_ms:.1f} ms a step, {total / 2 / 1000:.1f} ms of it in GPU kernels")
    for name, (us, count) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"{us / 2 / 1000:9.2f} ms {100 * us / total:5.1f}%  x{count // 2:<5} {name[:110]}")
    if args.gaps:
        _print_gaps(sorted(timeline), args.gaps)
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


def _print_gaps(timeline: list[tuple[float, float, str]], count: int) -> None:
    """The longest stretches with no kernel running, and the kernels on either side."""
    gaps, busy_until, last = [], timeline[0][1], timeline[0][2]
    for start, end, name in timeline[1:]:
        if start > busy_until:
            gaps.append((start - busy_until, last, name))
        if end > busy_until:
            busy_until, last = end, name
    total = sum(g for g, _, _ in gaps)
    print(f"\nGPU idle: {total / 2 / 1000:.1f} ms a step in {len(gaps) // 2} gaps; the longest:")
    for gap, before, after in sorted(gaps, reverse=True)[:count]:
        print(f"{gap / 1000:8.2f} ms after {before[:60]}  before {after[:60]}")


if __name__ == "__main__":
    main()
