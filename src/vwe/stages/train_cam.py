"""`vwe train-cam`: train the CAM network (VWE + HSPP) with the authors' recipe.

Deterministic by construction, so a resumed run equals an uninterrupted one and W ranks equal
one process with the same global batch: the image order comes from (seed, epoch), each sample's
augmentation from (seed, epoch, index), and every rank takes its slice of the same global batch.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from vwe.config import Config, LossWeights, to_yaml
from vwe.data.voc import ClassificationDataset, VocLayout
from vwe.engine import distributed as dist_utils
from vwe.engine.checkpoint import load_checkpoint, save_checkpoint
from vwe.engine.distributed import DistContext
from vwe.engine.optim import build_sgd, set_poly_lr
from vwe.engine.progress import progress
from vwe.engine.training import GlobalBatchSampler, checkpoint_paths, sigterm_as_interrupt
from vwe.errors import VweError
from vwe.models.cam_net import CamNet, cam_losses
from vwe.models.visual_words import init_codebook, memory_bank_ema, word_feature_sums

log = logging.getLogger(__name__)


def checkpoint_state(model: CamNet, codebook: torch.Tensor | None, step: int, cfg: Config,
                     class_names: list[str], optimizer: torch.optim.Optimizer | None) -> dict:
    """Everything later stages (and a resume) need, as plain tensors and strings."""
    state: dict[str, Any] = {
        "model": model.state_dict(), "step": step, "preset": cfg.preset,
        "model_config": OmegaConf.to_container(OmegaConf.structured(cfg.model)),
        "num_classes": len(class_names), "class_names": list(class_names),
        "config": to_yaml(cfg),
    }
    if codebook is not None:
        state["codebook"] = codebook.detach().cpu().clone()
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    return state


def total_steps(num_items: int, cfg: Config) -> int:
    """max_step = ⌊N/B⌋·epochs (authors), optionally capped by train_cam.max_steps."""
    per_epoch = num_items // cfg.train_cam.batch_size
    if per_epoch == 0:
        raise VweError(f"split '{cfg.data.train_list}' has {num_items} images, fewer than "
                       f"train_cam.batch_size={cfg.train_cam.batch_size}; lower the batch size")
    steps = per_epoch * cfg.train_cam.epochs
    return min(steps, cfg.train_cam.max_steps) if cfg.train_cam.max_steps > 0 else steps


def check_batch(cfg: Config, ctx: DistContext) -> None:
    if cfg.train_cam.batch_size % ctx.world_size:
        raise VweError(f"train_cam.batch_size={cfg.train_cam.batch_size} is the global batch and "
                       f"must divide by the {ctx.world_size} processes")


def freeze_heads_without_loss(model: CamNet, weights: LossWeights) -> None:
    """A head whose loss has weight 0 gets no gradient (VWL-M's fc_a): take it out of training,
    as the authors' SGD skipped it, and so DDP does not wait for its gradient."""
    unused = []
    if weights.img == 0:
        unused.append(model.classifier)
    if weights.word == 0:
        unused.append(model.word_classifier)
    if weights.w2i == 0:
        unused.append(model.w2i)
        if weights.decov == 0 and model.codebook is not None:
            unused.append(model.codebook)
    for module in unused:
        module.requires_grad_(False)


def memory_bank_step(codebook: torch.Tensor, features: torch.Tensor, word_labels: torch.Tensor,
                     rho: float, step: int, seed: int, ctx: DistContext) -> torch.Tensor:
    """EMA of each word's mean feature over the global batch; step 0 re-seeds from features."""
    sums, counts = word_feature_sums(features, word_labels, codebook.shape[0])
    dist_utils.all_reduce_sum(sums, ctx)
    dist_utils.all_reduce_sum(counts, ctx)
    codebook = memory_bank_ema(codebook, sums, counts, rho)
    if step == 0:  # the authors' script replaces the first update by random batch features
        flat = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
        flat = dist_utils.all_gather_cat(flat.contiguous(), ctx)
        generator = torch.Generator().manual_seed(seed)
        picks = torch.randint(flat.shape[0], (codebook.shape[0],), generator=generator)
        codebook = flat[picks.to(flat.device)].clone()
    return codebook


def run(cfg: Config) -> dict:
    return dist_utils.in_process_group(train, cfg)


def train(cfg: Config, ctx: DistContext) -> dict:
    out_dir = Path(cfg.run_dir) / "train_cam"
    tc = cfg.train_cam
    last_path, final_path, nothing_to_do = checkpoint_paths(out_dir, tc.resume, "train-cam")
    if nothing_to_do:
        return nothing_to_do
    check_batch(cfg, ctx)
    layout = VocLayout(cfg.data.root, cfg.data.mask_dir)
    dataset = ClassificationDataset(layout, cfg.data.train_list, tc, seed=cfg.seed)
    class_names = layout.class_names
    max_steps = total_steps(len(dataset), cfg)
    torch.manual_seed(cfg.seed)
    model = CamNet(cfg.model, len(class_names)).to(ctx.device)
    freeze_heads_without_loss(model, tc.losses)
    codebook = None
    if cfg.model.codebook == "memory_bank":  # held outside the model, like the authors' script
        codebook = init_codebook(cfg.model.num_words, model.feature_dim).to(ctx.device)
    optimizer = build_sgd(model.param_groups(tc.lr, tc.new_lr_mult, tc.weight_decay),
                          momentum=tc.momentum, weight_decay=tc.weight_decay)
    step = 0
    if tc.resume and last_path.exists():
        state = load_checkpoint(last_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        codebook = state["codebook"].to(ctx.device) if "codebook" in state else codebook
        step = int(state["step"])
        log.info("train-cam: resuming from %s at step %d/%d", last_path, step, max_steps)
    net = DistributedDataParallel(model) if ctx.distributed else model
    writer = SummaryWriter(str(out_dir / "tb")) if ctx.is_main else None
    try:
        with sigterm_as_interrupt():
            step, losses, codebook = train_loop(cfg, ctx, net, model, codebook, optimizer,
                                                dataset, step, max_steps, class_names, writer,
                                                last_path)
    finally:
        if writer is not None:
            writer.close()
    done = step >= max_steps
    if ctx.is_main and done:
        save_checkpoint(final_path, checkpoint_state(model, codebook, step, cfg, class_names,
                                                     None))
    dist_utils.barrier(ctx)
    summary = {"checkpoint": str(final_path if done else last_path), "steps": step,
               "max_steps": max_steps, "finished": done, "losses": losses}
    log.info("train-cam: %s after %d/%d steps, %s", "finished" if done else "stopped", step,
             max_steps, ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    return summary


def train_loop(cfg: Config, ctx: DistContext, net: torch.nn.Module, model: CamNet,
               codebook: torch.Tensor | None, optimizer: torch.optim.Optimizer,
               dataset: ClassificationDataset, step: int, max_steps: int,
               class_names: list[str], writer: SummaryWriter | None,
               last_path: Path) -> tuple[int, dict, torch.Tensor | None]:
    """Run updates from `step` to the end (or `stop_at_step`), checkpointing on the way."""
    tc = cfg.train_cam
    per_epoch = len(dataset) // tc.batch_size
    stop_at = min(max_steps, tc.stop_at_step) if tc.stop_at_step > 0 else max_steps
    losses: dict[str, float] = {}
    bar = progress(range(step, stop_at), total=max_steps, initial=step, desc="train-cam",
                   enabled=ctx.is_main)

    def save() -> None:
        if ctx.is_main:
            save_checkpoint(last_path, checkpoint_state(model, codebook, step, cfg, class_names,
                                                        optimizer))

    try:
        while step < stop_at:
            epoch, start_batch = divmod(step, per_epoch)
            dataset.set_epoch(epoch)
            sampler = GlobalBatchSampler(len(dataset), tc.batch_size, ctx, cfg.seed, epoch,
                                         start_batch)
            loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                                pin_memory=ctx.device.type == "cuda",
                                persistent_workers=False)
            for batch in loader:
                losses, codebook = train_step(cfg, ctx, net, codebook, optimizer, batch, step,
                                              max_steps)
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{losses['total']:.4f}", epoch=epoch)
                if writer is not None and (step % tc.log_every == 0 or step == stop_at):
                    for name, value in losses.items():
                        writer.add_scalar(f"loss/{name}", value, step)
                    writer.add_scalar("lr/backbone", optimizer.param_groups[0]["lr"], step)
                if step % tc.checkpoint_every == 0 or step % per_epoch == 0 or step == stop_at:
                    save()
                if step >= stop_at:
                    break
    except KeyboardInterrupt:
        save()
        raise VweError(f"train-cam interrupted at step {step}; {last_path} holds the last "
                       "checkpoint: rerun with --resume to continue") from None
    finally:
        bar.close()
    return step, losses, codebook


def train_step(cfg: Config, ctx: DistContext, net: torch.nn.Module,
               codebook: torch.Tensor | None, optimizer: torch.optim.Optimizer, batch: dict,
               step: int, max_steps: int) -> tuple[dict[str, float], torch.Tensor | None]:
    """One SGD update; a non-finite loss stops the run before the weights change."""
    tc = cfg.train_cam
    images = batch["image"].to(ctx.device, non_blocking=True)
    labels = batch["label"].to(ctx.device, non_blocking=True)
    set_poly_lr(optimizer, step, max_steps, tc.poly_power)
    use_amp = tc.amp and ctx.device.type == "cuda"
    with torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16, enabled=use_amp):
        output = net(images, codebook=codebook)
        terms = cam_losses(output, labels, tc.losses, learned_codebook(net))
    values = torch.stack([terms[k].detach().float() for k in sorted(terms)])
    dist_utils.all_reduce_sum(values, ctx)
    values /= ctx.world_size
    logged = dict(zip(sorted(terms), values.tolist()))
    if not all(math.isfinite(v) for v in logged.values()):
        raise VweError(f"train-cam: loss became non-finite at step {step} ({logged}); stopped "
                       f"before updating. The last good checkpoint is {cfg.run_dir}/train_cam/"
                       "last.pt; lower train_cam.lr or check the data, then --resume")
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    optimizer.step()
    if codebook is not None:
        codebook = memory_bank_step(codebook, output.features.detach().float(),
                                    output.word_labels, cfg.model.memory_rho, step, cfg.seed, ctx)
    return logged, codebook


def learned_codebook(net: torch.nn.Module) -> torch.Tensor | None:
    """The learned codebook parameter (for the decov term), through a DDP wrapper."""
    model = net.module if isinstance(net, DistributedDataParallel) else net
    return model.codebook.weight if model.codebook is not None else None
