"""Pieces every training stage shares: checkpoint paths, the global-batch sampler, SIGTERM."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.data import Sampler

from vwe.engine.distributed import DistContext
from vwe.errors import VweError

log = logging.getLogger(__name__)


def checkpoint_paths(out_dir: Path, resume: bool, stage: str
                     ) -> tuple[Path, Path, dict | None]:
    """A training stage's last.pt and final.pt, and its summary when there is nothing to do.

    An earlier run's last.pt is never overwritten silently: continue it with --resume or pick
    another run_dir.
    """
    last_path, final_path = out_dir / "last.pt", out_dir / "final.pt"
    if final_path.exists() and resume:
        log.info("%s: %s already exists; nothing to resume", stage, final_path)
        return last_path, final_path, {"checkpoint": str(final_path), "skipped": True}
    if last_path.exists() and not resume:
        raise VweError(f"{last_path} exists from an earlier run; pass --resume to continue it, "
                       "or set run_dir to a new folder")
    return last_path, final_path, None


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
