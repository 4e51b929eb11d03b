"""Process groups and sharding, kept out of the model and the recipe.

One process runs as a world of size 1 with no process group. Under `torchrun`
we join the group (NCCL on GPUs, gloo on CPU) and shard with FSDP2
(`fully_shard` per decoder layer, then the root), which also runs on CPU with
gloo, so the two-process tests exercise the same code as the GPU workers.
"""

from __future__ import annotations

import dataclasses
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


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def shard_model(model: nn.Module, layer_type: type[nn.Module], *, bf16: bool) -> None:
    """FSDP2: shard each decoder layer, then the root (embedding, final norm, head)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else None
    kwargs = {"mp_policy": mp} if mp is not None else {}
    layers = [m for m in model.modules() if isinstance(m, layer_type)]
    for i, layer in enumerate(layers):
        # The last layer's parameters are needed again at once by backward: keep them.
        fully_shard(layer, reshard_after_forward=i < len(layers) - 1, **kwargs)
    fully_shard(model, **kwargs)


def all_reduce_sum(value: torch.Tensor, world: World) -> torch.Tensor:
    if world.distributed:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def broadcast_object(obj: object, world: World) -> object:
    if not world.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
