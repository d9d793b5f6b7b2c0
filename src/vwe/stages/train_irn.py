"""`vwe train-irn`: IRNet's boundary and displacement branches on a frozen backbone
(docs/refinement.md#irnet-training).

Targets come from the IR labels (`vwe ir-labels`) on pairs within `train_irn.radius` (10) of the
stride-4 grid; losses as docs/refinement.md#losses, normalised over the global batch (sums and
counts all-reduced), so W ranks equal one process. Deterministic like train-cam: the image order is
a function of (seed, epoch), each sample's augmentation of (seed, epoch, index), so a resumed run
equals an uninterrupted one. After training, with the displacement branch on, the mean displacement
over `train_irn.mean_shift_split` is stored in the MeanShift buffer
(docs/refinement.md#displacement-mean).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from vwe.config import Config, to_yaml
from vwe.data.affinity import LABEL_STRIDE, AffinityDataset, TopLeftDataset
from vwe.data.voc import VocLayout, open_dataset
from vwe.engine import distributed as dist_utils
from vwe.engine.checkpoint import load_checkpoint, load_model_state
from vwe.engine.distributed import DistContext
from vwe.engine.loop import TrainingJob
from vwe.engine.loop import train as train_loop
from vwe.engine.optim import build_sgd, set_poly_lr
from vwe.engine.precision import autocast
from vwe.engine.progress import progress
from vwe.engine.run_dir import RunDir
from vwe.engine.training import prepare_training_dir
from vwe.engine.weights import resolve_generated
from vwe.errors import VweError
from vwe.models.backbone import clean_backbone_keys
from vwe.models.irn import (
    IRNet,
    PathTensors,
    affinity_targets,
    irn_loss_terms,
    irn_total_loss,
    path_tensors,
)
from vwe.models.registry import arch_entry, create_model
from vwe.refine.path_index import PathIndex
from vwe.stage_records import require_input, stage_record

log = logging.getLogger(__name__)

SUM_KEYS = ("bg_pos", "fg_pos", "neg", "dp_fg", "dp_bg")
COUNT_KEYS = ("bg_pos", "fg_pos", "neg")


def irn_backbone_name(cfg: Config) -> str:
    """train_irn.backbone, else the CAM network's model.backbone."""
    return cfg.train_irn.backbone or cfg.model.backbone


def backbone_state(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Backbone tensors of a vwe checkpoint (`model` → `backbone.*`) or a bare ResNet file."""
    for key in ("model", "state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
    if any(k.startswith("backbone.") for k in state):
        return {k.removeprefix("backbone."): v for k, v in state.items()
                if k.startswith("backbone.")}
    return clean_backbone_keys(state)


def load_backbone_init(model: IRNet, cfg: Config) -> None:
    """Copy `train_irn.backbone_init` weights (cam | a file) into the frozen backbone."""
    init = cfg.train_irn.backbone_init
    path = RunDir(cfg).cam_checkpoint if init == "cam" else Path(init)
    if init != "cam" and not path.is_file():
        raise VweError(f"train_irn.backbone_init={init}: no such file; use imagenet, cam or the "
                       "path of a weights file")
    state = load_checkpoint(path)
    recorded = state.get("arch", {}).get("kwargs", {}).get("backbone")
    name = irn_backbone_name(cfg)
    if recorded and recorded != name:
        raise VweError(f"{path} holds a {recorded} backbone but IRNet is built as {name}; set "
                       f"train_irn.backbone={recorded} (or model.backbone)")
    load_model_state(model.backbone, backbone_state(state), path)
    log.info("train-irn: backbone initialised from %s", path)


def irnet_kwargs(cfg: Config) -> dict[str, Any]:
    """IRNet's architecture as the registry builds it."""
    return {"backbone": irn_backbone_name(cfg),
            "with_displacement": cfg.train_irn.with_displacement}


def build_irnet(cfg: Config) -> IRNet:
    """IRNet with its branches seeded from cfg.seed and its backbone from backbone_init."""
    init = cfg.train_irn.backbone_init
    torch.manual_seed(cfg.seed)
    model = create_model("irnet", **irnet_kwargs(cfg),
                         pretrained="imagenet" if init == "imagenet" else "none")
    if init not in ("imagenet", "none"):
        load_backbone_init(model, cfg)
    return model


def checkpoint_extras(cfg: Config, class_names: list[str]) -> dict[str, Any]:
    """Beside the weights (backbone included, so inference needs no download): the IRNet shape."""
    return {"class_names": list(class_names), "arch": arch_entry("irnet", irnet_kwargs(cfg)),
            "config": to_yaml(cfg)}


def check_config(cfg: Config, ctx: DistContext, num_items: int) -> int:
    """Validate the training settings; returns max_step = ⌊N/B⌋·epochs (optionally capped)."""
    tc = cfg.train_irn
    if tc.crop_size <= 0 or tc.crop_size % LABEL_STRIDE:
        raise VweError(f"train_irn.crop_size={tc.crop_size} must be a positive multiple of 4 "
                       "(labels are reduced ×0.25)")
    low, high = (list(tc.scale_range) + [0, 0])[:2]
    if len(tc.scale_range) != 2 or not 0 < low <= high:
        raise VweError(f"train_irn.scale_range must be [low, high] with 0 < low <= high, got "
                       f"{list(tc.scale_range)}")
    if tc.batch_size <= 0 or tc.batch_size % ctx.world_size:
        raise VweError(f"train_irn.batch_size={tc.batch_size} is the global batch and must be a "
                       f"positive multiple of the {ctx.world_size} processes")
    per_epoch = num_items // tc.batch_size
    if per_epoch == 0:
        raise VweError(f"split '{cfg.data.train_list}' has {num_items} images, fewer than "
                       f"train_irn.batch_size={tc.batch_size}; lower the batch size")
    steps = tc.steps or per_epoch * tc.epochs
    return min(steps, tc.max_steps) if tc.max_steps > 0 else steps


def training_paths(cfg: Config, device: torch.device) -> PathTensors:
    """PathIndex of train_irn.radius on the (crop/4)² label grid, as tensors
    (docs/refinement.md#pathindex)."""
    grid = cfg.train_irn.crop_size // LABEL_STRIDE
    try:
        index = PathIndex(cfg.train_irn.radius, (grid, grid))
    except ValueError as err:
        raise VweError(f"train_irn.crop_size={cfg.train_irn.crop_size} and train_irn.radius="
                       f"{cfg.train_irn.radius} do not fit ({err}); raise the crop or lower "
                       "the radius") from None
    return path_tensors(index, device)


def run(cfg: Config) -> dict:
    """`generated` weights: vwe pretrain's cached backbone (docs/synthetic.md#pretraining)."""
    return dist_utils.in_process_group(train, resolve_generated(cfg, require="train_irn"))


def train(cfg: Config, ctx: DistContext) -> dict:
    tc = cfg.train_irn
    run_dir = RunDir(cfg)
    start = prepare_training_dir(cfg, "train_irn", stage_record(cfg, "train_irn"), ctx)
    if start.done:
        return start.done
    require_input(cfg, "ir_labels", run_dir.ir_labels)
    layout = open_dataset(cfg.data)
    dataset = AffinityDataset(layout, cfg.data.train_list, run_dir.ir_labels, tc.crop_size,
                              tc.scale_range, tc.flip_prob, seed=cfg.seed)
    max_steps = check_config(cfg, ctx, len(dataset))
    paths = training_paths(cfg, ctx.device)
    model = build_irnet(cfg).to(ctx.device)
    optimizer = build_sgd(model.param_groups(tc.lr, tc.weight_decay), momentum=tc.momentum,
                          weight_decay=tc.weight_decay)

    def train_step(net: torch.nn.Module, batch: dict, step: int) -> dict[str, float]:
        """Boundary + displacement losses over the global batch (docs/refinement.md), backward."""
        images = batch["image"].to(ctx.device, non_blocking=True)
        labels = batch["label"].to(ctx.device, non_blocking=True)
        set_poly_lr(optimizer, step, max_steps, tc.poly_power)
        with autocast(ctx.device, tc.amp):
            edge_logits, displacement = net(images)
        targets = affinity_targets(labels, paths)
        if displacement is not None:
            displacement = displacement.float()
        sums, counts = irn_loss_terms(edge_logits.float(), displacement, targets, paths)
        total, logged = global_losses(sums, counts, ctx)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        return logged

    def store_displacement_mean() -> None:  # last.pt already holds the trained weights
        if tc.with_displacement:
            model.mean_shift.running_mean.copy_(displacement_mean(cfg, ctx, model, layout))

    job = TrainingJob("train_irn", tc, start, ctx, model, optimizer, dataset, max_steps,
                      cfg.seed, cfg.data.num_workers, train_step,
                      state=lambda: checkpoint_extras(cfg, layout.class_names),
                      on_finished=store_displacement_mean)
    return train_loop(job)


def global_losses(sums: dict[str, torch.Tensor], counts: dict[str, torch.Tensor],
                  ctx: DistContext) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss to back-propagate and the logged terms, normalised over the global batch
    (docs/refinement.md#losses).

    Counts are all-reduced; the differentiable loss keeps this rank's sums scaled by the world
    size (DDP averages gradients); the logged values use all-reduced detached sums.
    """
    count_vec = dist_utils.all_reduce_sum(torch.stack([counts[k] for k in COUNT_KEYS]), ctx)
    counts = dict(zip(COUNT_KEYS, count_vec))
    total, _ = irn_total_loss(sums, counts, scale=float(ctx.world_size))
    sum_vec = dist_utils.all_reduce_sum(torch.stack([sums[k].detach() for k in SUM_KEYS]), ctx)
    logged_total, terms = irn_total_loss(dict(zip(SUM_KEYS, sum_vec)), counts)
    logged = {k: float(v) for k, v in terms.items()}
    logged["total"] = float(logged_total)
    return total, logged


@torch.no_grad()
def displacement_mean(cfg: Config, ctx: DistContext, model: IRNet,
                      layout: VocLayout) -> torch.Tensor:
    """Mean displacement (2,) over the full batches of mean_shift_split, top-left crops
    (docs/refinement.md#displacement-mean).

    IRNet averages per-batch means over batches of 32 (drop_last); batches are equal and every
    crop has the same size, so that is the mean of per-image means over the first ⌊N/B⌋·B
    images, which ranks compute in strided shares and all-reduce.
    """
    tc = cfg.train_irn
    names = layout.read_split(tc.mean_shift_split)
    used = len(names) // tc.batch_size * tc.batch_size or len(names)  # < one batch: use all
    dataset = TopLeftDataset(layout, dist_utils.shard(names[:used], ctx), tc.crop_size)
    loader = DataLoader(dataset, batch_size=max(1, tc.batch_size // ctx.world_size),
                        num_workers=cfg.data.num_workers)
    model.eval()
    total = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # Σ mean_y, Σ mean_x, count
    for images in progress(loader, desc="train-irn mean shift", enabled=ctx.is_main):
        _, displacement = model(images.to(ctx.device))
        per_image = displacement.double().mean(dim=(2, 3))  # (B, 2)
        total[:2] += per_image.sum(dim=0)
        total[2] += per_image.shape[0]
    dist_utils.all_reduce_sum(total, ctx)
    model.train()
    mean = (total[:2] / total[2].clamp(min=1)).float().cpu()
    log.info("train-irn: mean displacement (y, x) = (%.4f, %.4f) over %d images of '%s'",
             mean[0], mean[1], int(total[2]), tc.mean_shift_split)
    return mean
