"""The one training loop under train-cam, train-irn and train-seg.

Read it top to bottom like torchvision's reference `train_one_epoch`: resume from last.pt through
the strict loader, wrap in DDP, then epoch after epoch take this rank's slice of each global batch
(`GlobalBatchSampler`: the order is a function of (seed, epoch), so a resume and W ranks see the
same batches), call the stage's `train_step` (its maths: forward, loss, backward), stop before the
update when a loss is non-finite (last.pt stays the last good checkpoint), update, log, and save
last.pt on the cadence; Ctrl-C or SIGTERM saves and stops with a line that says how to resume.
At the end, `on_finished` (e.g. IRNet's displacement mean) and final.pt without the optimiser.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from vwe.config import LoopSettings
from vwe.data.io import ensure_writable_dir
from vwe.data.voc import EpochSeededDataset
from vwe.diagnostics import loss_not_falling
from vwe.engine.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from vwe.engine.distributed import DistContext, barrier
from vwe.engine.memory import keep_freed_memory
from vwe.engine.progress import progress
from vwe.engine.records import write_record
from vwe.engine.run_dir import TrainingDir
from vwe.engine.training import (
    GlobalBatchSampler,
    StopRequest,
    TrainingInterrupted,
    TrainingStart,
    stop_at_step_boundary,
)
from vwe.errors import VweError

log = logging.getLogger(__name__)

# (net, batch, step) → logged losses with a "total" entry; gradients computed, weights untouched
TrainStep = Callable[[torch.nn.Module, dict[str, Any], int], dict[str, float]]


@dataclass
class TrainingJob:
    """Everything the loop needs from a training stage."""

    stage: str  # train_cam | train_irn | train_seg (its config section)
    settings: LoopSettings
    start: TrainingStart  # the folder and the record its checkpoints are made from
    ctx: DistContext
    model: torch.nn.Module  # the bare model, wrapped in DDP by the loop
    optimizer: torch.optim.Optimizer
    dataset: EpochSeededDataset
    max_steps: int
    seed: int
    num_workers: int
    train_step: TrainStep
    state: Callable[[], dict[str, Any]]  # what a checkpoint holds besides model/optimizer/step
    saved: torch.nn.Module | None = None  # the part checkpoints hold (default: model)
    load_state: Callable[[dict[str, Any]], None] | None = None  # extra state on resume
    after_update: Callable[[int], None] | None = None  # after optimizer.step (memory bank)
    on_finished: Callable[[], None] | None = None  # before final.pt is written
    save_each_epoch: bool = True

    @property
    def out(self) -> TrainingDir:
        return self.start.out


def train(job: TrainingJob) -> dict[str, Any]:
    """Run the job from its last checkpoint (or step 0) to the end or `stop_at_step`."""
    keep_freed_memory()  # each step reuses the last one's buffers (docs/performance.md#make-cam)
    ensure_writable_dir(job.out.root, "run_dir")
    if job.ctx.is_main:
        write_record([job.out.root], job.start.record)
    if job.settings.channels_last:  # resume loads into these tensors, keeping the layout
        job.model.to(memory_format=torch.channels_last)
    step = resume(job) if job.settings.resume and job.out.last.exists() else 0
    log.info("%s: %d steps of batch %d over %d training images (%d steps an epoch)",
             dashed(job.stage), job.max_steps, job.settings.batch_size, len(job.dataset),
             max(len(job.dataset) // job.settings.batch_size, 1))
    net = DistributedDataParallel(job.model) if job.ctx.distributed else job.model
    if job.settings.compile:  # checkpoints keep saving job.model: the same parameters
        net = torch.compile(net)
    writer = SummaryWriter(str(job.out.tensorboard)) if job.ctx.is_main else None
    try:
        with stop_at_step_boundary() as request:
            step, losses = run_epochs(job, net, step, writer, request)
            done = step >= job.max_steps
            if done and job.on_finished is not None:
                job.on_finished()
    except TrainingInterrupted as stopped:
        raise VweError(interrupted_message(job, stopped.saved_step)) from None
    finally:
        if writer is not None:
            writer.close()
    if job.ctx.is_main and done:
        save_checkpoint(job.out.final, checkpoint(job, step, with_optimizer=False))
    barrier(job.ctx)
    log.info("%s: %s after %d/%d steps, %s", dashed(job.stage),
             "finished" if done else "stopped", step, job.max_steps,
             ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    return {"checkpoint": str(job.out.final if done else job.out.last), "steps": step,
            "max_steps": job.max_steps, "finished": done, "losses": losses}


def interrupted_message(job: TrainingJob, saved_step: int) -> str:
    if saved_step == 0:
        return (f"{dashed(job.stage)} interrupted before its first checkpoint; nothing was "
                "saved: rerun to start again")
    return (f"{dashed(job.stage)} interrupted; {job.out.last} holds step {saved_step}/"
            f"{job.max_steps}: rerun with --resume to continue")


def resume(job: TrainingJob) -> int:
    """Load last.pt strictly (weights, optimiser, extra state); returns its step."""
    state = load_checkpoint(job.out.last)
    load_model_state(saved_module(job), state["model"], job.out.last)
    job.optimizer.load_state_dict(state["optimizer"])
    if job.load_state is not None:
        job.load_state(state)
    step = int(state["step"])
    log.info("%s: resuming from %s at step %d/%d", dashed(job.stage), job.out.last, step,
             job.max_steps)
    return step


def run_epochs(job: TrainingJob, net: torch.nn.Module, step: int, writer: SummaryWriter | None,
               request: StopRequest) -> tuple[int, dict[str, float]]:
    """Updates from `step` to the end (or stop_at_step), saving last.pt on the way; a stop
    request saves and stops at the next step boundary (TrainingInterrupted)."""
    settings, ctx = job.settings, job.ctx
    per_epoch = len(job.dataset) // settings.batch_size
    stop_at = min(job.max_steps, settings.stop_at_step) if settings.stop_at_step > 0 \
        else job.max_steps
    losses: dict[str, float] = {}
    totals: list[float] = []  # this process's total losses, for the not-falling check
    bar = progress(range(step, stop_at), total=job.max_steps, initial=step,
                   desc=dashed(job.stage), enabled=ctx.is_main)
    saved_step = step if job.out.last.exists() else 0
    try:
        while step < stop_at:
            epoch, start_batch = divmod(step, per_epoch)
            job.dataset.set_epoch(epoch)
            sampler = GlobalBatchSampler(len(job.dataset), settings.batch_size, ctx, job.seed,
                                         epoch, start_batch)
            loader = DataLoader(job.dataset, batch_sampler=sampler, num_workers=job.num_workers,
                                pin_memory=ctx.device.type == "cuda")
            for batch in loader:
                losses = update(job, net, batch, step)
                totals.append(losses["total"])
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{losses['total']:.4f}", epoch=epoch)
                if writer is not None and (step % settings.log_every == 0 or step == stop_at):
                    log_scalars(writer, job.optimizer, losses, step)
                epoch_end = job.save_each_epoch and step % per_epoch == 0
                if step % settings.checkpoint_every == 0 or epoch_end or step == stop_at:
                    saved_step = save_last(job, step)
                if stop_requested(request, ctx):
                    saved_step = save_last(job, step) if saved_step != step else step
                    raise TrainingInterrupted(saved_step)
                if step >= stop_at:
                    break
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:  # a second signal: stop now, keep the last whole-step checkpoint
        raise TrainingInterrupted(saved_step) from None
    finally:
        bar.close()
    warning = loss_not_falling(totals, dashed(job.stage)) if step >= job.max_steps else None
    if warning and ctx.is_main:
        log.warning("%s", warning)
    return step, losses


def stop_requested(request: StopRequest, ctx: DistContext) -> bool:
    """Whether any rank was asked to stop: all ranks stop after the same step."""
    if not ctx.distributed:
        return request.requested
    flag = torch.tensor([float(request.requested)], device=ctx.device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def update(job: TrainingJob, net: torch.nn.Module, batch: dict[str, Any],
           step: int) -> dict[str, float]:
    """One SGD update; non-finite inputs or loss stop the run before the weights change."""
    check_inputs(batch, step, job.stage)
    losses = job.train_step(net, batch, step)
    if not all(math.isfinite(v) for v in losses.values()):
        kept = (f"The last good checkpoint is {job.out.last}; lower {job.stage}.lr or check the "
                "inputs, then --resume") if job.out.last.exists() else \
            (f"No checkpoint was saved before it; lower {job.stage}.lr or check the inputs, then "
             "rerun")
        raise VweError(f"{dashed(job.stage)}: loss became non-finite at step {step} "
                       f"({losses}); stopped before updating. {kept}")
    job.optimizer.step()
    if job.after_update is not None:
        job.after_update(step)
    return losses


def check_inputs(batch: dict[str, Any], step: int, stage: str) -> None:
    """One reduction per float tensor of the batch: NaN/Inf inputs name their images."""
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() \
                and not bool(torch.isfinite(value).all()):
            names = ", ".join(map(str, batch.get("name", [])[:4])) or "?"
            raise VweError(f"{dashed(stage)}: the batch of step {step} holds NaN or Inf in "
                           f"'{key}' (images {names}); check those files")


def log_scalars(writer: SummaryWriter, optimizer: torch.optim.Optimizer,
                losses: dict[str, float], step: int) -> None:
    """loss/<term> and lr/group<i> for every parameter group, the same tags in every stage."""
    for name, value in losses.items():
        writer.add_scalar(f"loss/{name}", value, step)
    for index, group in enumerate(optimizer.param_groups):
        writer.add_scalar(f"lr/group{index}", group["lr"], step)


def checkpoint(job: TrainingJob, step: int, with_optimizer: bool) -> dict[str, Any]:
    state = {"model": saved_module(job).state_dict(), "step": step, **job.state()}
    if with_optimizer:
        state["optimizer"] = job.optimizer.state_dict()
    return state


def saved_module(job: TrainingJob) -> torch.nn.Module:
    return job.saved if job.saved is not None else job.model


def save_last(job: TrainingJob, step: int) -> int:
    """Write last.pt (on the main rank); returns the step it holds."""
    if job.ctx.is_main:
        save_checkpoint(job.out.last, checkpoint(job, step, with_optimizer=True))
    return step


def dashed(stage: str) -> str:
    return stage.replace("_", "-")
