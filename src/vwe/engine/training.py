"""Pieces every training stage shares: the global-batch sampler and SIGTERM handling."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.utils.data import Sampler

from vwe.engine.distributed import DistContext


class GlobalBatchSampler(Sampler[list[int]]):
    """This rank's slice of each global batch of a seeded per-epoch permutation (drop_last)."""

    def __init__(self, num_items: int, global_batch: int, ctx: DistContext, seed: int,
                 epoch: int, start_batch: int = 0) -> None:
        self.num_items, self.global_batch, self.ctx = num_items, global_batch, ctx
        self.seed, self.epoch, self.start_batch = seed, epoch, start_batch
        self.per_rank = global_batch // ctx.world_size

    def batches_per_epoch(self) -> int:
        return self.num_items // self.global_batch

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_items, generator=generator).tolist()
        lo = self.ctx.rank * self.per_rank
        for b in range(self.start_batch, self.batches_per_epoch()):
            batch = order[b * self.global_batch:(b + 1) * self.global_batch]
            yield batch[lo:lo + self.per_rank]

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start_batch


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Schedulers send SIGTERM before killing a job: treat it like Ctrl-C so we checkpoint."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
