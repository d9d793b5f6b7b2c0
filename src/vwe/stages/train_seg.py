"""`vwe train-seg`: DeepLabV2 on a folder of label PNGs (pseudo labels, or GT for a sanity run).

Recipes `deeplab` (KZ) and `vwe_author` (RL) of specs/seg.md §1.6; augmentation §1.8; poly SGD
with the head groups of `models.deeplab.param_groups`. Deterministic like train-cam: the image
order comes from (seed, epoch), each sample's augmentation from (seed, epoch, index), every rank
takes its slice of the same global batch and the loss is normalised by the global batch's pixel
counts (`models.seg_loss`), so a resumed run equals an uninterrupted one and W ranks × A
accumulation steps equal one process (exactly with frozen batch norm).
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from vwe.config import Config, TrainSegConfig, to_yaml
from vwe.data.io import ensure_writable_dir
from vwe.data.segmentation import SegTrainDataset, SegTrainTransform, check_label_folder
from vwe.data.voc import VocLayout
from vwe.engine import distributed as dist_utils
from vwe.engine.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from vwe.engine.distributed import DistContext
from vwe.engine.optim import build_sgd
from vwe.engine.progress import progress
from vwe.engine.training import GlobalBatchSampler, checkpoint_paths, sigterm_as_interrupt
from vwe.errors import VweError
from vwe.models.backbone import use_batch_statistics
from vwe.models.deeplab import (
    MSC,
    RECIPES,
    build_deeplab,
    input_normalization,
    param_groups,
    set_poly_lr,
)
from vwe.models.seg_loss import (
    LOSS_TYPES,
    msc_output_sizes,
    pixel_counts,
    split_msc_loss,
    target_sizes,
)

log = logging.getLogger(__name__)

# TrainSegConfig key → RECIPES key, for the keys a recipe fills when they are null (§1.6)
RECIPE_KEYS = {"lr": "lr", "weight_decay": "weight_decay", "momentum": "momentum",
               "poly_power": "poly_power", "poly_update_every": "update_every"}


def recipe_settings(tc: TrainSegConfig) -> dict[str, Any]:
    """The recipe's optimiser settings with every non-null config key applied over them."""
    name = tc.recipe.replace("-", "_")
    if name not in RECIPES:
        raise VweError(f"train_seg.recipe={tc.recipe} is unknown; choose deeplab or vwe_author "
                       "(specs/seg.md §1.6)")
    settings = {"recipe": name, **RECIPES[name]}
    for key, recipe_key in RECIPE_KEYS.items():
        if getattr(tc, key) is not None:
            settings[recipe_key] = getattr(tc, key)
    if tc.loss not in LOSS_TYPES:
        raise VweError(f"train_seg.loss={tc.loss} is unknown; choose one of "
                       f"{', '.join(LOSS_TYPES)}")
    return settings


def label_dir(cfg: Config) -> Path:
    """seg.label_dir, by default <run_dir>/pseudo_labels."""
    return Path(cfg.seg.label_dir) if cfg.seg.label_dir else Path(cfg.run_dir) / "pseudo_labels"


def build_seg_model(cfg: Config, num_classes: int, pretrained: str) -> MSC:
    """DeepLabV2 + MSC as `seg.*` says; batch statistics when seg.frozen_bn is false."""
    seg = cfg.seg
    model = build_deeplab(num_classes, seg.backbone, seg.layout, pretrained, seg.msc_scales,
                          seg.freeze_stem, dataset=cfg.data.root)
    return use_batch_statistics(model) if not seg.frozen_bn else model


def check_batch(tc: TrainSegConfig, ctx: DistContext) -> int:
    """Images per micro-batch on this rank; the global batch must split evenly."""
    if tc.iterations < 1 or tc.crop_size < 1 or not tc.scales or min(tc.scales) <= 0:
        raise VweError(f"train_seg.iterations ({tc.iterations}) and train_seg.crop_size "
                       f"({tc.crop_size}) must be >= 1 and train_seg.scales positive "
                       f"({list(tc.scales)})")
    splits = ctx.world_size * max(tc.accumulation, 1)
    if tc.accumulation < 1 or tc.batch_size % splits:
        raise VweError(f"train_seg.batch_size={tc.batch_size} is the global batch and must divide "
                       f"by processes × train_seg.accumulation = {ctx.world_size} × "
                       f"{tc.accumulation}")
    return tc.batch_size // splits


def checkpoint_state(model: MSC, step: int, cfg: Config, class_names: list[str],
                     optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """The base net's weights and what infer-seg and a resume need, as plain data."""
    state: dict[str, Any] = {
        "model": model.base.state_dict(), "step": step, "num_classes": len(class_names),
        "class_names": list(class_names),
        "seg_config": OmegaConf.to_container(OmegaConf.structured(cfg.seg)),
        "recipe": cfg.train_seg.recipe, "config": to_yaml(cfg),
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    return state


def make_dataset(cfg: Config, layout: VocLayout) -> SegTrainDataset:
    """The training split with its labels, every label checked before anything is written."""
    tc, seg = cfg.train_seg, cfg.seg
    names = layout.read_split(tc.train_list)
    if len(names) < tc.batch_size:
        raise VweError(f"split '{tc.train_list}' has {len(names)} images, fewer than "
                       f"train_seg.batch_size={tc.batch_size}; lower the batch size")
    labels = label_dir(cfg)
    check_label_folder(layout, names, labels, layout.num_classes + 1, seg.ignore_index,
                       cfg.data.num_workers)
    mean, std, bgr = input_normalization(seg.layout)
    transform = SegTrainTransform(tc.crop_size, tuple(tc.scales), tc.flip_prob, tuple(mean),
                                  tuple(std), bgr, seg.ignore_index)
    return SegTrainDataset(layout, names, labels, transform, seed=cfg.seed)


def run(cfg: Config) -> dict[str, Any]:
    return dist_utils.in_process_group(train, cfg)


def train(cfg: Config, ctx: DistContext) -> dict[str, Any]:
    out_dir = Path(cfg.run_dir) / "train_seg"
    tc = cfg.train_seg
    last_path, final_path, nothing_to_do = checkpoint_paths(out_dir, tc.resume, "train-seg")
    if nothing_to_do:
        return nothing_to_do
    settings = recipe_settings(tc)
    check_batch(tc, ctx)
    ensure_writable_dir(out_dir, "run_dir")
    layout = VocLayout(cfg.data.root, cfg.data.mask_dir)
    dataset = make_dataset(cfg, layout)
    class_names = ["background", *layout.class_names]
    resuming = tc.resume and last_path.exists()
    torch.manual_seed(cfg.seed)
    model = build_seg_model(cfg, len(class_names),
                            "none" if resuming else cfg.seg.pretrained).to(ctx.device).train()
    optimizer = build_sgd(param_groups(model, settings["lr"], settings["weight_decay"],
                                       settings["recipe"]),
                          momentum=settings["momentum"], weight_decay=settings["weight_decay"])
    step = 0
    if resuming:
        state = load_checkpoint(last_path)
        load_model_state(model.base, state["model"], last_path)
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        log.info("train-seg: resuming from %s at step %d/%d", last_path, step, tc.iterations)
    net = DistributedDataParallel(model) if ctx.distributed else model
    writer = SummaryWriter(str(out_dir / "tb")) if ctx.is_main else None
    loop = TrainLoop(cfg, ctx, net, model, optimizer, settings, class_names, writer, last_path)
    try:
        with sigterm_as_interrupt():
            step, loss = loop.run(dataset, step)
    finally:
        if writer is not None:
            writer.close()
    done = step >= tc.iterations
    if ctx.is_main and done:
        save_checkpoint(final_path, checkpoint_state(model, step, cfg, class_names, None))
    dist_utils.barrier(ctx)
    log.info("train-seg: %s after %d/%d steps, loss %.4f", "finished" if done else "stopped",
             step, tc.iterations, loss)
    return {"checkpoint": str(final_path if done else last_path), "steps": step,
            "max_steps": tc.iterations, "finished": done, "loss": loss}


class TrainLoop:
    """Updates from a step to the end (or `stop_at_step`), checkpointing on the way."""

    def __init__(self, cfg: Config, ctx: DistContext, net: torch.nn.Module, model: MSC,
                 optimizer: torch.optim.Optimizer, settings: dict[str, Any],
                 class_names: list[str], writer: SummaryWriter | None, last_path: Path) -> None:
        self.cfg, self.ctx, self.net, self.model = cfg, ctx, net, model
        self.optimizer, self.settings, self.class_names = optimizer, settings, class_names
        self.writer, self.last_path = writer, last_path
        sizes = msc_output_sizes(model, cfg.train_seg.crop_size, ctx.device)
        self.term_sizes = target_sizes(settings["recipe"], sizes)

    def save(self, step: int) -> None:
        if self.ctx.is_main:
            save_checkpoint(self.last_path, checkpoint_state(self.model, step, self.cfg,
                                                             self.class_names, self.optimizer))

    def run(self, dataset: SegTrainDataset, step: int) -> tuple[int, float]:
        tc = self.cfg.train_seg
        per_epoch = len(dataset) // tc.batch_size
        stop_at = min(tc.iterations, tc.stop_at_step) if tc.stop_at_step > 0 else tc.iterations
        loss = math.nan
        bar = progress(range(step, stop_at), total=tc.iterations, initial=step,
                       desc="train-seg", enabled=self.ctx.is_main)
        try:
            while step < stop_at:
                epoch, start_batch = divmod(step, per_epoch)
                dataset.set_epoch(epoch)
                sampler = GlobalBatchSampler(len(dataset), tc.batch_size, self.ctx,
                                             self.cfg.seed, epoch, start_batch)
                loader = DataLoader(dataset, batch_sampler=sampler,
                                    num_workers=self.cfg.data.num_workers,
                                    pin_memory=self.ctx.device.type == "cuda")
                for batch in loader:
                    loss = self.step(batch, step)
                    step += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", epoch=epoch)
                    self.log(step, loss, stop_at)
                    if step % tc.checkpoint_every == 0 or step == stop_at:
                        self.save(step)
                    if step >= stop_at:
                        break
        except KeyboardInterrupt:
            self.save(step)
            raise VweError(f"train-seg interrupted at step {step}; {self.last_path} holds the "
                           "last checkpoint: rerun with --resume to continue") from None
        finally:
            bar.close()
        return step, loss

    def log(self, step: int, loss: float, stop_at: int) -> None:
        if self.writer is not None and (step % self.cfg.train_seg.log_every == 0
                                        or step == stop_at):
            self.writer.add_scalar("loss/total", loss, step)
            self.writer.add_scalar("lr/backbone", self.optimizer.param_groups[0]["lr"], step)

    def step(self, batch: dict[str, Any], step: int) -> float:
        """One SGD update over the global batch; a non-finite loss stops before the update."""
        tc, ctx, settings = self.cfg.train_seg, self.ctx, self.settings
        ignore = self.cfg.seg.ignore_index
        images = batch["image"].to(ctx.device, non_blocking=True)
        labels = batch["label"].to(ctx.device, non_blocking=True)
        set_poly_lr(self.optimizer, settings["lr"], step, tc.iterations, settings["poly_power"],
                    settings["update_every"])
        counts = pixel_counts(labels, self.term_sizes, tc.loss, ignore)
        dist_utils.all_reduce_sum(counts, ctx)  # the global batch's pixels, per term and part
        self.optimizer.zero_grad(set_to_none=True)
        micro = images.shape[0] // tc.accumulation
        total = torch.zeros((), dtype=torch.float64, device=ctx.device)
        use_amp = tc.amp and ctx.device.type == "cuda"
        for index, start in enumerate(range(0, images.shape[0], micro)):
            last = index == tc.accumulation - 1
            sync = nullcontext() if last or not ctx.distributed else self.net.no_sync()
            with sync:
                with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=use_amp):
                    outputs = self.net(images[start:start + micro])
                loss = split_msc_loss(outputs, labels[start:start + micro], counts,
                                      settings["recipe"], tc.loss, ignore)
                (loss * ctx.world_size).backward()  # DDP averages over ranks; we want the sum
            total += loss.detach().double()
        dist_utils.all_reduce_sum(total, ctx)
        value = float(total)
        if not math.isfinite(value):
            raise VweError(f"train-seg: loss became non-finite at step {step} ({value}); stopped "
                           f"before updating. The last good checkpoint is {self.last_path}; "
                           "lower train_seg.lr or check the labels, then --resume")
        self.optimizer.step()
        return value
