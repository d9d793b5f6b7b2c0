"""`vwe train-seg`: DeepLabV2 on a folder of label PNGs (pseudo labels, or GT for a sanity run).

Recipes `deeplab` (KZ) and `vwe_author` (RL) of docs/segmentation.md#training-recipes; augmentation
docs/segmentation.md#augmentation; poly SGD with the head groups of `models.deeplab.param_groups`.
Deterministic like train-cam: the image order comes from (seed, epoch), each sample's augmentation
from (seed, epoch, index), every rank takes its slice of the same global batch and the loss is
normalised by the global batch's pixel counts (`models.seg_loss`), so a resumed run equals an
uninterrupted one and W ranks × A accumulation steps equal one process (exactly with frozen batch
norm).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from vwe.config import Config, TrainSegConfig, to_yaml, with_recipe
from vwe.data.segmentation import SegTrainDataset, SegTrainTransform, check_label_folder
from vwe.data.voc import VocLayout, open_dataset
from vwe.engine import distributed as dist_utils
from vwe.engine.distributed import DistContext
from vwe.engine.loop import TrainingJob
from vwe.engine.loop import train as train_loop
from vwe.engine.optim import build_sgd, set_poly_lr
from vwe.engine.precision import autocast
from vwe.engine.run_dir import RunDir
from vwe.engine.training import prepare_training_dir
from vwe.engine.weights import resolve_generated
from vwe.errors import VweError
from vwe.inference.trained_scale import seg_training_long_side
from vwe.models.backbone import use_batch_statistics
from vwe.models.deeplab import (
    MSC,
    input_normalization,
    param_groups,
)
from vwe.models.registry import arch_entry, create_model
from vwe.models.seg_loss import (
    msc_output_sizes,
    pixel_counts,
    split_msc_loss,
    target_sizes,
)
from vwe.stage_records import require_input, stage_record

log = logging.getLogger(__name__)

def build_seg_model(cfg: Config, num_classes: int, pretrained: str) -> MSC:
    """DeepLabV2 + MSC as `seg.*` says; batch statistics when seg.frozen_bn is false."""
    # a COCO-pretrained init is refused for COCO data (docs/formats.md#ms-coco-2014)
    dataset = f"data.format=coco, {cfg.data.root}" if cfg.data.format == "coco" else cfg.data.root
    model = create_model("deeplab", **deeplab_kwargs(cfg, num_classes), pretrained=pretrained,
                         dataset=dataset)
    return use_batch_statistics(model) if not cfg.seg.frozen_bn else model


def deeplab_kwargs(cfg: Config, num_classes: int) -> dict[str, Any]:
    """DeepLab's architecture as the registry builds it (batch-norm mode is a training choice:
    fixed batch norm in eval equals BatchNorm2d in eval)."""
    seg = cfg.seg
    kwargs = {"num_classes": num_classes, "backbone": seg.backbone, "layout": seg.layout,
              "msc_scales": list(seg.msc_scales), "freeze_stem": seg.freeze_stem}
    if seg.output_stride != 8:  # recorded only when set: DeepLabV2's records stay as they were
        kwargs["output_stride"] = seg.output_stride
    return kwargs


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


def checkpoint_extras(cfg: Config, class_names: list[str],
                      trained_long_side: tuple[int, int] | None = None) -> dict[str, Any]:
    """Beside the base net's weights: what infer-seg needs, as plain data (with the long sides
    training showed, docs/pipeline.md#trained-scale)."""
    extras = {"num_classes": len(class_names), "class_names": list(class_names),
              "arch": arch_entry("deeplab", deeplab_kwargs(cfg, len(class_names))),
              "recipe": cfg.train_seg.recipe, "config": to_yaml(cfg)}
    if trained_long_side is not None:
        extras["trained_long_side"] = list(trained_long_side)
    return extras


def make_dataset(cfg: Config, layout: VocLayout, labels: Path) -> SegTrainDataset:
    """The training split with its labels, every label checked before anything is written."""
    tc, seg = cfg.train_seg, cfg.seg
    names = layout.read_split(tc.train_list)
    if len(names) < tc.batch_size:
        raise VweError(f"split '{tc.train_list}' has {len(names)} images, fewer than "
                       f"train_seg.batch_size={tc.batch_size}; lower the batch size")
    check_label_folder(layout, names, labels, layout.num_classes + 1, seg.ignore_index,
                       cfg.data.num_workers)
    mean, std, bgr = input_normalization(seg.layout)
    transform = SegTrainTransform(tc.crop_size, tuple(tc.scales), tc.flip_prob, tuple(mean),
                                  tuple(std), bgr, seg.ignore_index)
    return SegTrainDataset(layout, names, labels, transform, seed=cfg.seed)


def run(cfg: Config) -> dict[str, Any]:
    """`generated` weights: vwe pretrain's cached backbone (docs/synthetic.md#pretraining)."""
    return dist_utils.in_process_group(train, resolve_generated(cfg, require="seg"))


def train(cfg: Config, ctx: DistContext) -> dict[str, Any]:
    tc = cfg.train_seg
    run_dir = RunDir(cfg)
    start = prepare_training_dir(cfg, "train_seg", stage_record(cfg, "train_seg"), ctx)
    if start.done:
        return start.done
    tc = with_recipe(tc)  # a Config built by hand: the recipe's values in its null keys
    check_batch(tc, ctx)
    if not cfg.seg.label_dir:
        require_input(cfg, "pseudo_labels", run_dir.pseudo_labels)
    layout = open_dataset(cfg.data)
    dataset = make_dataset(cfg, layout, run_dir.seg_train_labels)
    long_sides = seg_training_long_side(layout, dataset.names, tc.scales)
    class_names = ["background", *layout.class_names]
    resuming = tc.resume and start.out.last.exists()
    torch.manual_seed(cfg.seed)
    model = build_seg_model(cfg, len(class_names),
                            "none" if resuming else cfg.seg.pretrained).to(ctx.device).train()
    optimizer = build_sgd(param_groups(model, tc.lr, tc.weight_decay, tc.recipe),
                          momentum=tc.momentum, weight_decay=tc.weight_decay)
    step_fn = SegTrainStep(cfg, tc, ctx, model, optimizer)
    job = TrainingJob("train_seg", tc, start, ctx, model, optimizer, dataset, tc.iterations,
                      cfg.seed, cfg.data.num_workers, step_fn,
                      state=lambda: checkpoint_extras(cfg, class_names, long_sides),
                      saved=model.base,
                      save_each_epoch=False)
    return train_loop(job)


class SegTrainStep:
    """DeepLab's maths for one update: MSC losses over the global batch, accumulation."""

    def __init__(self, cfg: Config, tc: TrainSegConfig, ctx: DistContext, model: MSC,
                 optimizer: torch.optim.Optimizer) -> None:
        self.cfg, self.tc, self.ctx, self.optimizer = cfg, tc, ctx, optimizer
        sizes = msc_output_sizes(model, tc.crop_size, ctx.device)
        self.at_input = tc.loss_at == "input"
        crop = (tc.crop_size, tc.crop_size) if self.at_input else None
        self.term_sizes = target_sizes(tc.recipe, sizes, crop)

    def __call__(self, net: torch.nn.Module, batch: dict[str, Any],
                 step: int) -> dict[str, float]:
        """Gradients of the global batch's loss (normalised by its pixel counts, seg_loss)."""
        tc, ctx = self.tc, self.ctx
        ignore = self.cfg.seg.ignore_index
        images = batch["image"].to(ctx.device, non_blocking=True)
        labels = batch["label"].to(ctx.device, non_blocking=True)
        set_poly_lr(self.optimizer, step, tc.iterations, tc.poly_power, tc.poly_update_every)
        counts = pixel_counts(labels, self.term_sizes, tc.loss, ignore)
        dist_utils.all_reduce_sum(counts, ctx)  # the global batch's pixels, per term and part
        self.optimizer.zero_grad(set_to_none=True)
        micro = images.shape[0] // tc.accumulation
        total = torch.zeros((), dtype=torch.float64, device=ctx.device)
        for index, start in enumerate(range(0, images.shape[0], micro)):
            last = index == tc.accumulation - 1
            sync = nullcontext() if last or not ctx.distributed else net.no_sync()
            with sync:
                with autocast(ctx.device, tc.amp):
                    outputs = [o.float() for o in net(images[start:start + micro])]
                loss = split_msc_loss(outputs, labels[start:start + micro], counts,
                                      tc.recipe, tc.loss, ignore, self.at_input)
                (loss * ctx.world_size).backward()  # DDP averages over ranks; we want the sum
            total += loss.detach().double()
        dist_utils.all_reduce_sum(total, ctx)
        return {"total": float(total)}
