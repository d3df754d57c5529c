"""DDP set-up from the environment ``torchrun`` provides (the one place it is read).

``torchrun --nproc-per-node N -m appliance.cli train ...`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; without them the
run is a single process. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from training.torch_import import require_torch

torch = require_torch("Distributed training")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(requested: str, ctx: DistContext):
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(ctx.local_rank)
        return torch.device("cuda", ctx.local_rank)
    return torch.device("cpu")


def init_distributed(device_kind: str, env: Mapping[str, str] | None = None) -> DistContext:
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1"))
    ctx = DistContext(int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", "0")))
    if ctx.enabled and not torch.distributed.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend, init_method="env://",
                                             rank=ctx.rank, world_size=ctx.world_size)
    return ctx


def all_reduce_mean(values: list[float], ctx: DistContext, device) -> list[float]:
    if not ctx.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return (t / ctx.world_size).tolist()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        torch.distributed.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
