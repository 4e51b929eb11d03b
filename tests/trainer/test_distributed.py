"""FSDP2 sharding as the trainer sets it up (prefetch, resharding or not) trains like one unsharded process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.config import preset
from trainer.distributed import fits_gathered
from trainer.model import YuanForCausalLM

REPO = Path(__file__).resolve().parents[2]

# Each of 2 ranks trains on its half of a batch; rank 0 also trains an unsharded copy on
# the whole batch and compares losses and final weights.
WORKER = r'''
import copy, json, sys
import torch
from trainer.config import preset
from trainer.distributed import close_world, init_world, shard_model
from trainer.loss import CausalLMLoss
from trainer.model import DecoderLayer, YuanForCausalLM

reshard = {"true": True, "false": False}[sys.argv[2]]
world = init_world()
torch.manual_seed(0)
model = YuanForCausalLM(preset("yuan2_tiny"))
model.init_weights(0)
plain = CausalLMLoss(copy.deepcopy(model))
start = {k: v.clone() for k, v in plain.state_dict().items()}
model = CausalLMLoss(model)  # the loss inside the sharded root's forward, as the trainer shards it
shard_model(model, DecoderLayer, bf16=False, reshard_after_forward=reshard)
ids = torch.randint(0, 256, (4, 24), generator=torch.Generator().manual_seed(1))
targets = ids.roll(-1, dims=1)
mine = slice(2 * world.rank, 2 * world.rank + 2)
opts = [torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (model, plain)]
losses = {"sharded": [], "plain": []}
for _ in range(3):
    # FSDP2 averages gradients over ranks: scale each rank's sum by world size / total count.
    loss, _ = model(ids[mine], targets=targets[mine])
    (loss * world.size / targets.numel()).backward()
    opts[0].step(); opts[0].zero_grad()
    total = loss.detach().clone()
    torch.distributed.all_reduce(total)
    losses["sharded"].append(float(total) / targets.numel())
    full = plain(ids, targets=targets)[0] / targets.numel()
    full.backward()
    opts[1].step(); opts[1].zero_grad()
    losses["plain"].append(float(full))
state = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v) for k, v in model.state_dict().items()}
if world.is_main:
    ref = plain.state_dict()
    # Adam turns reduction-order noise in near-zero gradients into small weight noise:
    # compare the difference with how far training moved the weights.
    diff = max(float((state[k] - ref[k]).abs().max()) for k in ref)
    moved = max(float((ref[k] - start[k]).abs().max()) for k in ref)
    json.dump({"losses": losses, "weight_diff": diff, "weight_moved": moved}, open(sys.argv[1], "w"))
del model, opts, state
close_world(world)
'''


@pytest.mark.slow
@pytest.mark.parametrize("reshard", ["true", "false"])
def test_two_sharded_processes_train_like_one_unsharded(tmp_path: Path, reshard: str) -> None:
    script, out = tmp_path / "worker.py", tmp_path / "result.json"
    script.write_text(WORKER, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script), str(out), reshard],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    sharded, plain = result["losses"]["sharded"], result["losses"]["plain"]
    assert len(sharded) == 3 and plain[-1] < plain[0]
    assert sharded == pytest.approx(plain, rel=1e-5)
    assert result["weight_diff"] < 1e-3 * result["weight_moved"], result


def test_layers_stay_gathered_only_where_the_card_holds_the_model_eight_times() -> None:
    with torch.device("meta"):
        two_b = YuanForCausalLM(preset("yuan2_2b"))  # about 2.1B parameters: 4.2 GB in bf16, 8.4 GB in fp32
    gib = 2**30
    assert fits_gathered(two_b, torch.bfloat16, 80 * gib)
    assert not fits_gathered(two_b, None, 40 * gib)  # stored as float32 and gathered as such
    assert fits_gathered(two_b, None, 80 * gib)
    assert not fits_gathered(two_b, torch.bfloat16, 24 * gib)
    # Without a GPU (gloo on CPU) nothing says there is room: layers reshard.
    assert not fits_gathered(two_b, torch.bfloat16, None)
