"""Pieces every training stage shares: the folder's record, the global-batch sampler, SIGTERM."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.utils.data import Sampler

from vwe.config import Config
from vwe.engine import distributed as dist_utils
from vwe.engine.distributed import DistContext
from vwe.engine.records import Record, clear_outputs, needs_clearing
from vwe.engine.run_dir import RunDir, TrainingDir
from vwe.errors import VweError

log = logging.getLogger(__name__)


TRAINING_FILES = ("last.pt", "final.pt", "tb/*")


@dataclass(frozen=True)
class TrainingStart:
    """A training stage's folder and record, and its summary when there is nothing to do."""

    out: TrainingDir
    record: Record
    done: dict | None


def prepare_training_dir(cfg: Config, stage: str, record: Record,
                         ctx: DistContext) -> TrainingStart:
    """The stage's training folder; `done` is the summary when final.pt is already this
    config's and `resume` is on (nothing to do), else None: train.

    A folder trained with other settings is cleared (overwrite=changed/always) or refused, so a
    resume never continues another config's run; an earlier run's last.pt is never overwritten
    silently: continue it with --resume or pick another run_dir. The loop writes the record
    when training starts.
    """
    out, resume, command = RunDir(cfg).training(stage), getattr(cfg, stage).resume, \
        stage.replace("_", "-")
    error: Exception | None = None
    if ctx.is_main:
        try:
            has_files = out.last.exists() or out.final.exists()
            if needs_clearing(out.root, record, cfg.overwrite, command, has_files):
                clear_outputs([out.root], TRAINING_FILES)
        except Exception as err:  # re-raised after the barrier, so other ranks do not hang
            error = err
    dist_utils.barrier(ctx)
    if error is not None:
        raise error
    if out.final.exists() and resume:
        log.info("%s: %s already exists with these settings; nothing to resume", command,
                 out.final)
        return TrainingStart(out, record, {"checkpoint": str(out.final), "skipped": True})
    if out.last.exists() and not resume:
        # the record matched (else it was cleared or refused above), so --overwrite
        # (overwrite=changed) would keep it: only `always` starts again
        raise VweError(f"{out.last} exists from an earlier run with these settings; pass "
                       "--resume to continue it, overwrite=always to start again, or set "
                       "run_dir to a new folder")
    return TrainingStart(out, record, None)


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


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal; `saved_step` is the step last.pt holds (0: none saved)."""

    def __init__(self, saved_step: int) -> None:
        super().__init__(saved_step)
        self.saved_step = saved_step


class StopRequest:
    """Ctrl-C or SIGTERM while training: the first asks to stop at the end of the step (so the
    checkpoint holds whole steps: weights, optimiser and batch-norm statistics of the same
    step); a second one stops at once, keeping the last checkpoint already written."""

    def __init__(self) -> None:
        self.requested = False

    def handler(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("%s: finishing this step, then saving last.pt (again to stop at once)",
                    signal.Signals(signum).name)


@contextmanager
def stop_at_step_boundary() -> Iterator[StopRequest]:
    """Route SIGINT and SIGTERM (schedulers send it before killing a job) to a StopRequest."""
    request = StopRequest()
    try:
        previous = {sig: signal.signal(sig, request.handler)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield request
        return
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
