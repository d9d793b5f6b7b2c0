"""`vwe pretrain`: train model.backbone on the generated classification task and cache it
(docs/synthetic.md#pretraining).

The offline stand-in for ImageNet weights: `model.pretrained=generated` (and
`train_irn.backbone_init`, `seg.pretrained`) then start from this backbone, so the demo can
train with the paper's recipe (frozen BN statistics, frozen stem, layers 1-2 detached). The
result lives in `<pretrain.cache_dir>/<backbone>-<digest>/` (backbone.pth, pretrain.json, the
loop's last.pt / final.pt / tb): the digest covers every key that changes the weights, so runs
and seeds with the same keys share it and a changed key trains a new one. Resumable like the
other training stages (an interrupted run continues from last.pt).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vwe.config import Config
from vwe.data.io import read_json, write_json_atomic
from vwe.data.pretrain_task import VAL_STREAM, PretrainTask, task_classes
from vwe.engine import distributed as dist_utils
from vwe.engine.checkpoint import load_checkpoint, save_checkpoint
from vwe.engine.distributed import DistContext
from vwe.engine.loop import TrainingJob
from vwe.engine.loop import train as train_loop
from vwe.engine.optim import build_sgd, set_poly_lr
from vwe.engine.precision import autocast
from vwe.engine.records import Record, read_record
from vwe.engine.run_dir import TrainingDir
from vwe.engine.training import TrainingStart
from vwe.engine.weights import (
    BACKBONE_FILE,
    generated_backbone_dir,
    pretrain_record,
    wants_generated,
)
from vwe.errors import VweError
from vwe.metrics import percent
from vwe.models.backbone import build_backbone, use_batch_statistics

log = logging.getLogger(__name__)

STEPS_PER_EPOCH = 50  # the task is endless; an "epoch" is only the loop's bookkeeping unit
SUMMARY_FILE = "pretrain.json"
IMAGENET_STRIDES = (1, 2, 2, 2)  # a classifier's strides; the weights fit any stride setting


class TaskClassifier(nn.Module):
    """The backbone with batch statistics, global average pooling and a linear classifier."""

    def __init__(self, backbone: str, num_classes: int) -> None:
        super().__init__()
        self.backbone = use_batch_statistics(build_backbone(backbone, IMAGENET_STRIDES))
        self.fc = nn.Linear(self.backbone.out_channels[-1], num_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.fc(self.backbone(images)[-1].mean(dim=(2, 3)))


def run(cfg: Config) -> dict[str, Any]:
    """Pretrain every backbone a `generated` key asks for (model.backbone when none does); a
    cached one is not retrained. `vwe run` calls it only when some key asks."""
    backbones = wants_generated(cfg) or [cfg.model.backbone]
    results = {name: dist_utils.in_process_group(lambda c, ctx, n=name: pretrain(c, ctx, n), cfg)
               for name in backbones}
    return {"backbones": results}


def cached_summary(folder: Path, record: Record) -> dict[str, Any] | None:
    """pretrain.json of a finished backbone made with `record`, else None."""
    summary_file = folder / SUMMARY_FILE
    if not (folder / BACKBONE_FILE).is_file() or not summary_file.is_file():
        return None
    found = read_record(folder)
    return read_json(summary_file) if found == record.to_json() else None


def pretrain(cfg: Config, ctx: DistContext, backbone: str) -> dict[str, Any]:
    folder = generated_backbone_dir(cfg, backbone)
    record = pretrain_record(cfg, backbone)
    done = cached_summary(folder, record)
    if done is not None:
        log.info("pretrain: %s is cached (%s, held-out accuracy %s%%)", backbone, folder,
                 percent(done["val_accuracy"]))
        return {**done, "skipped": True}
    # the folder is named by the record's digest, so what it holds is this record's: continue it
    pc = dataclasses.replace(cfg.pretrain, resume=True)
    if pc.batch_size % ctx.world_size:
        raise VweError(f"pretrain.batch_size={pc.batch_size} is the global batch and must divide "
                       f"by the {ctx.world_size} processes")
    classes = task_classes(pc.num_classes, pc.seed)
    dataset = PretrainTask(classes, pc.image_size, pc.batch_size * STEPS_PER_EPOCH, pc.seed)
    torch.manual_seed(pc.seed)
    model = TaskClassifier(backbone, len(classes)).to(ctx.device)
    optimizer = build_sgd([{"params": list(model.parameters()), "lr": pc.lr}],
                          momentum=pc.momentum, weight_decay=pc.weight_decay)
    started = time.monotonic()
    job = TrainingJob("pretrain", pc, TrainingStart(TrainingDir(folder), record, None), ctx,
                      model, optimizer, dataset, pc.steps, pc.seed, pc.num_workers,
                      TaskStep(cfg, ctx, optimizer), state=lambda: {"backbone": backbone},
                      save_each_epoch=False)
    summary = train_loop(job)
    if not summary["finished"]:
        return summary
    accuracy = held_out_accuracy(model, classes, cfg, ctx)
    result = {"backbone": backbone, "file": str(folder / BACKBONE_FILE),
              "val_accuracy": accuracy, "chance": 1.0 / len(classes), "steps": summary["steps"],
              "loss": summary["losses"].get("total"),
              "seconds": round(time.monotonic() - started, 1)}
    if ctx.is_main:
        save_backbone(folder / "final.pt", folder / BACKBONE_FILE)
        write_json_atomic(folder / SUMMARY_FILE, result)
    dist_utils.barrier(ctx)
    log.info("pretrain: %s held-out accuracy %s%% (chance %.1f%%) → %s", backbone,
             percent(accuracy), 100 / len(classes), folder / BACKBONE_FILE)
    return result


def save_backbone(final: Path, out: Path) -> None:
    """The backbone's tensors alone, under torchvision's names: any weights key loads it."""
    state = load_checkpoint(final)["model"]
    save_checkpoint(out, {k.removeprefix("backbone."): v for k, v in state.items()
                          if k.startswith("backbone.")})


@torch.no_grad()
def held_out_accuracy(model: TaskClassifier, classes: list, cfg: Config,
                      ctx: DistContext) -> float | None:
    """Top-1 accuracy on pretrain.val_images images of a stream training never draws from
    (None when val_images is 0)."""
    pc = cfg.pretrain
    if pc.val_images == 0:
        return None
    data = PretrainTask(classes, pc.image_size, pc.val_images, pc.seed, stream=VAL_STREAM)
    loader = torch.utils.data.DataLoader(data, batch_size=pc.batch_size)
    model.eval()
    correct = 0
    for batch in loader:
        with autocast(ctx.device, pc.amp):
            logits = model(batch["image"].to(ctx.device))
        correct += int((logits.argmax(1).cpu() == batch["label"]).sum())
    model.train()
    return correct / len(data)


class TaskStep:
    """Cross-entropy on the task's labels, poly learning rate."""

    def __init__(self, cfg: Config, ctx: DistContext, optimizer: torch.optim.Optimizer) -> None:
        self.cfg, self.ctx, self.optimizer = cfg, ctx, optimizer

    def __call__(self, net: nn.Module, batch: dict, step: int) -> dict[str, float]:
        pc = self.cfg.pretrain
        set_poly_lr(self.optimizer, step, pc.steps, pc.poly_power)
        images = batch["image"].to(self.ctx.device, non_blocking=True)
        labels = batch["label"].to(self.ctx.device, non_blocking=True)
        with autocast(self.ctx.device, pc.amp):
            logits = net(images)
        loss = F.cross_entropy(logits.float(), labels)
        values = torch.stack([loss.detach(), (logits.argmax(1) == labels).float().mean()])
        dist_utils.all_reduce_sum(values, self.ctx)
        values /= self.ctx.world_size
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return {"total": float(values[0]), "accuracy": float(values[1])}
