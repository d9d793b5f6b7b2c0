"""`vwe train-cam`: train the CAM network (VWE + HSPP) with the authors' recipe.

Deterministic by construction, so a resumed run equals an uninterrupted one and W ranks equal
one process with the same global batch: the image order comes from (seed, epoch), each sample's
augmentation from (seed, epoch, index), and every rank takes its slice of the same global batch.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from vwe.config import Config, LossWeights, to_yaml
from vwe.data.voc import ClassificationDataset, open_dataset
from vwe.engine import distributed as dist_utils
from vwe.engine.distributed import DistContext
from vwe.engine.loop import TrainingJob
from vwe.engine.loop import train as train_loop
from vwe.engine.optim import build_sgd, set_poly_lr
from vwe.engine.precision import autocast
from vwe.engine.records import plain
from vwe.engine.training import prepare_training_dir
from vwe.engine.weights import resolve_generated
from vwe.errors import VweError
from vwe.models.cam_net import CamNet, cam_losses
from vwe.models.registry import arch_entry, create_model
from vwe.models.visual_words import init_codebook, memory_bank_ema, word_feature_sums
from vwe.stage_records import stage_record

log = logging.getLogger(__name__)


def total_steps(num_items: int, cfg: Config) -> int:
    """max_step = ⌊N/B⌋·epochs (authors), or train_cam.steps when set; optionally capped by
    train_cam.max_steps."""
    per_epoch = num_items // cfg.train_cam.batch_size
    if per_epoch == 0:
        raise VweError(f"split '{cfg.data.train_list}' has {num_items} images, fewer than "
                       f"train_cam.batch_size={cfg.train_cam.batch_size}; lower the batch size")
    steps = cfg.train_cam.steps or per_epoch * cfg.train_cam.epochs
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
    """`generated` weights: vwe pretrain's cached backbone (docs/synthetic.md#pretraining)."""
    return dist_utils.in_process_group(train, resolve_generated(cfg, require="model"))


def train(cfg: Config, ctx: DistContext) -> dict:
    tc = cfg.train_cam
    start = prepare_training_dir(cfg, "train_cam", stage_record(cfg, "train_cam"), ctx)
    if start.done:
        return start.done
    check_batch(cfg, ctx)
    layout = open_dataset(cfg.data)
    dataset = ClassificationDataset(layout, cfg.data.train_list, tc, seed=cfg.seed)
    class_names = layout.class_names
    max_steps = total_steps(len(dataset), cfg)
    torch.manual_seed(cfg.seed)
    model = create_model("cam_net", **cam_net_kwargs(cfg, len(class_names)),
                         pretrained=cfg.model.pretrained).to(ctx.device)
    freeze_heads_without_loss(model, tc.losses)
    optimizer = build_sgd(model.param_groups(tc.lr, tc.new_lr_mult, tc.weight_decay),
                          momentum=tc.momentum, weight_decay=tc.weight_decay)
    step_fn = CamTrainStep(cfg, ctx, optimizer, max_steps)
    if cfg.model.codebook == "memory_bank":  # held outside the model, like the authors' script
        step_fn.codebook = init_codebook(cfg.model.num_words, model.feature_dim).to(ctx.device)
    job = TrainingJob(
        "train_cam", tc, start, ctx, model, optimizer, dataset, max_steps, cfg.seed,
        cfg.data.num_workers, step_fn,
        state=lambda: checkpoint_extras(step_fn.codebook, cfg, class_names),
        load_state=step_fn.load_codebook, after_update=step_fn.update_codebook)
    return train_loop(job)


def cam_net_kwargs(cfg: Config, num_classes: int) -> dict[str, Any]:
    """The CAM network's architecture as the registry builds it: the model.* keys."""
    fields = {f.name: getattr(cfg.model, f.name) for f in dataclasses.fields(cfg.model)}
    fields.pop("pretrained")
    return {"num_classes": num_classes, **plain(fields)}


def checkpoint_extras(codebook: torch.Tensor | None, cfg: Config,
                      class_names: list[str]) -> dict[str, Any]:
    """What later stages need besides the weights, as plain tensors and strings."""
    state: dict[str, Any] = {
        "preset": cfg.preset,
        "arch": arch_entry("cam_net", cam_net_kwargs(cfg, len(class_names))),
        "num_classes": len(class_names), "class_names": list(class_names),
        "config": to_yaml(cfg),
        # the long sides training showed (docs/pipeline.md#trained-scale)
        "trained_long_side": [int(side) for side in cfg.train_cam.resize_long],
    }
    if codebook is not None:
        state["codebook"] = codebook.detach().cpu().clone()
    return state


class CamTrainStep:
    """The CAM network's maths for one update, plus the memory-bank codebook it carries."""

    def __init__(self, cfg: Config, ctx: DistContext, optimizer: torch.optim.Optimizer,
                 max_steps: int) -> None:
        self.cfg, self.ctx, self.optimizer, self.max_steps = cfg, ctx, optimizer, max_steps
        self.codebook: torch.Tensor | None = None
        self.features: torch.Tensor | None = None
        self.word_labels: torch.Tensor | None = None

    def __call__(self, net: torch.nn.Module, batch: dict, step: int) -> dict[str, float]:
        """Forward, the three losses (docs/method.md#losses), backward; the loop updates."""
        tc, ctx = self.cfg.train_cam, self.ctx
        images = batch["image"].to(ctx.device, non_blocking=True)
        labels = batch["label"].to(ctx.device, non_blocking=True)
        set_poly_lr(self.optimizer, step, self.max_steps, tc.poly_power)
        with autocast(ctx.device, tc.amp):
            output = net(images, codebook=self.codebook)
            terms = cam_losses(output, labels, tc.losses, learned_codebook(net))
        values = torch.stack([terms[k].detach().float() for k in sorted(terms)])
        dist_utils.all_reduce_sum(values, ctx)
        values /= ctx.world_size
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.features, self.word_labels = output.features.detach().float(), output.word_labels
        return dict(zip(sorted(terms), values.tolist()))

    def update_codebook(self, step: int) -> None:
        if self.codebook is not None:
            self.codebook = memory_bank_step(self.codebook, self.features, self.word_labels,
                                             self.cfg.model.memory_rho, step, self.cfg.seed,
                                             self.ctx)

    def load_codebook(self, state: dict[str, Any]) -> None:
        if "codebook" in state:
            self.codebook = state["codebook"].to(self.ctx.device)


def learned_codebook(net: torch.nn.Module) -> torch.Tensor | None:
    """The learned codebook parameter (for the decov term), through a DDP wrapper."""
    model = net.module if isinstance(net, DistributedDataParallel) else net
    return model.codebook.weight if model.codebook is not None else None
