"""torch.distributed helpers: one context object instead of global state.

Launched by `torchrun`, each process reads RANK/WORLD_SIZE/LOCAL_RANK from the environment;
without them the run is a single process. CUDA runs use NCCL, CPU runs gloo.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from vwe.errors import VweError

T = TypeVar("T")
C = TypeVar("C")
R = TypeVar("R")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """`auto` picks CUDA when present; `cuda` without a GPU is a user error."""
    if preference not in {"auto", "cpu", "cuda"}:
        raise VweError(f"config key 'device' must be auto, cpu or cuda, not '{preference}'")
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise VweError("device=cuda but no CUDA GPU is visible; use device=cpu or device=auto")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def setup(preference: str = "auto") -> DistContext:
    """Join the process group when started by torchrun, else describe a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        import_compiler_before_the_group()
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistContext(rank, world_size, local_rank, device)


def import_compiler_before_the_group() -> None:
    """Import torch._dynamo before the process group exists (docs/pipeline.md#leaving-the-group).

    Imported afterwards (DDP's constructor does), it keeps references to the default group, so
    destroy_process_group cannot free it: gloo's worker threads then live into interpreter
    shutdown, where one of them can abort the process ("terminate called without an active
    exception") after the stage has finished.
    """
    import torch._dynamo  # noqa: F401


def teardown(ctx: DistContext) -> None:
    """Leave the process group (safe to call for single-process runs)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def in_process_group(body: Callable[[C, DistContext], R], cfg: C) -> R:
    """Run a stage body inside the process group (joined from torchrun's environment), and
    leave the group whatever happens: every distributed stage's `run(cfg)`."""
    ctx = setup(cfg.device)  # type: ignore[attr-defined]
    try:
        return body(cfg, ctx)
    finally:
        teardown(ctx)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over ranks in place (identity for one process)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_cat(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Concatenate equally shaped tensors from all ranks along dim 0, in rank order."""
    if not ctx.distributed:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(ctx.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def shard(items: Sequence[T], ctx: DistContext) -> list[T]:
    """This rank's share of a list (strided, so ranks get similar image sizes)."""
    return list(items[ctx.rank :: ctx.world_size])
