"""Process groups and sharding, kept out of the model and the recipe.

One process runs as a world of size 1 with no process group. Under `torchrun`
we join the group (NCCL on GPUs, gloo on CPU) and shard with FSDP2
(`fully_shard` per decoder layer, then the root), which also runs on CPU with
gloo, so the two-process tests exercise the same code as the GPU workers.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn


@dataclasses.dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world() -> World:
    """Join the torchrun process group if there is one; pick this process's device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=30),
                                device_id=device if device.type == "cuda" else None)
    return World(rank=rank, size=size, local_rank=local_rank, device=device)


def close_world(world: World, *, wait_for_peers: bool = True) -> None:
    """Leave the process group; with `wait_for_peers`, once every rank has got here.

    Sharded modules keep the group alive through their device mesh, often in reference
    cycles; a gloo group first freed while the interpreter shuts down aborts the process
    from its worker thread ("terminate called without an active exception") after a run
    that succeeded. So the group is destroyed and the cycles collected here, while
    Python is still running; call this after dropping the sharded model. A rank leaving
    after an error does not wait: its peers may be blocked in another collective, and
    torchrun stops them when it exits.
    """
    if world.distributed and dist.is_initialized():
        if wait_for_peers:
            dist.barrier()
        dist.destroy_process_group()
        gc.collect()


def shard_model(model: nn.Module, layer_type: type[nn.Module], *, bf16: bool,
                reshard_after_forward: bool | None = None) -> None:
    """FSDP2: shard each decoder layer, then the root (embedding, final norm, head).

    `model` is what the trainer runs, `trainer.loss.CausalLMLoss`: the loss is computed
    in the root's forward, where the root's gathered parameters (the head) are in place.

    Each layer prefetches the next one's parameters (forward) and the previous
    one's (backward), so the all-gathers run under the current layer's compute.
    `reshard_after_forward` None picks: on a GPU whose memory holds the whole
    gathered model eight times over, layers stay gathered from forward to backward
    (one all-gather per layer and step instead of two); otherwise they reshard.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # Without bf16, FSDP's default policy (parameters and reductions in their own dtype).
    mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16
          else MixedPrecisionPolicy())
    if reshard_after_forward is None:
        reshard_after_forward = not fits_gathered(model, torch.bfloat16 if bf16 else None, _device_memory(model))
    layers = [m for m in model.modules() if isinstance(m, layer_type)]
    # The last layer's parameters are needed again at once by backward: keep them.
    sharded = [fully_shard(layer, reshard_after_forward=reshard_after_forward and i < len(layers) - 1, mp_policy=mp)
               for i, layer in enumerate(layers)]
    fully_shard(model, mp_policy=mp)
    for before, after in itertools.pairwise(sharded):
        before.set_modules_to_forward_prefetch([after])
        after.set_modules_to_backward_prefetch([before])


def fits_gathered(model: nn.Module, dtype: torch.dtype | None, device_memory: int | None) -> bool:
    """Whether eight copies of the whole model, in `dtype` (None: as stored), fit in `device_memory` bytes."""
    if device_memory is None:
        return False
    size = sum(p.numel() * (dtype.itemsize if dtype is not None else p.element_size()) for p in model.parameters())
    return 8 * size <= device_memory


def _device_memory(model: nn.Module) -> int | None:
    param = next(model.parameters(), None)
    if param is None or param.device.type != "cuda":
        return None
    return torch.cuda.get_device_properties(param.device).total_memory


def all_reduce_sum(value: torch.Tensor, world: World) -> torch.Tensor:
    if world.distributed:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
