"""`vwe pseudo-labels`: CAMs propagated by a random walk over IRNet's affinities
(docs/refinement.md#random-walk).

Per image of `pseudo_labels.split`: the boundary map of the image and its mirror (logits averaged
before the sigmoid) at stride 4; affinities on pairs within radius 5; the K foreground CAMs
(`cam`, stride 4) times (1 − boundary) walked T^(2^8) (β = 10); ×4 bilinear, divided by the global
max; a constant background plane 0.25 and the argmax: a uint8 PNG with no ignore label.
The walk itself is stored too (`<run_dir>/walks/<name>.npz`: `rw` at stride 4 in
`pseudo_labels.walk_dtype`, and `keys`) and the PNG is made from exactly the stored values, so
`vwe eval-labels` can sweep the background threshold without walking again and reproduce the
PNGs bit for bit. Resumable per image on the per-image runner (PNG written last, atomically);
ranks take strided shares.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from vwe.config import Config, PseudoLabelConfig
from vwe.data.cam_files import check_cam_files, load_cam, stride4_size
from vwe.data.io import image_size, load_npz, read_image, save_label_png, save_npz
from vwe.data.transforms import normalize
from vwe.data.voc import open_dataset
from vwe.engine import distributed as dist_utils
from vwe.engine.checkpoint import load_trained
from vwe.engine.distributed import DistContext
from vwe.engine.memory import keep_freed_memory
from vwe.engine.per_image import ImageOutputs, run_per_image
from vwe.engine.precision import autocast
from vwe.engine.run_dir import RunDir
from vwe.inference.thresholds import (
    auto_walk_threshold,
    best_on_masks,
    calibration_names,
    is_auto,
)
from vwe.models.backbone import fold_batch_norm
from vwe.models.irn import IRNet, edge_map
from vwe.refine.random_walk import propagated_to_label, random_walk, upsample_walk
from vwe.stage_records import require_input, stage_record

log = logging.getLogger(__name__)



def load_irnet(cfg: Config, device: torch.device) -> IRNet:
    """The trained IRNet as its checkpoint records it; its backbone must be the configured one."""
    backbone = cfg.train_irn.backbone or cfg.model.backbone
    trained = load_trained(RunDir(cfg).irn_checkpoint, "irnet",
                           must_match={"train_irn.backbone": ("backbone", backbone)})
    return prepare_irnet(trained.model).to(device)


def prepare_irnet(model: IRNet) -> IRNet:
    """The loaded IRNet for inference: its frozen backbone's batch norms folded into the convs
    (same boundary map up to float rounding, docs/performance.md#make-cam)."""
    fold_batch_norm(model.eval().backbone)
    return model


def image_pair(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """The normalised image and its mirror as a (2, 3, H, W) batch (docs/refinement.md#random-walk
    step 1)."""
    normalised = normalize(image)
    pair = np.stack([normalised, normalised[:, ::-1]]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(pair)).to(device)


def walk_image(model: IRNet, image: np.ndarray, cams: np.ndarray, pl: PseudoLabelConfig,
               device: torch.device) -> np.ndarray:
    """Random-walk maps (K, ⌈H/4⌉, ⌈W/4⌉) of one image's stride-4 CAMs
    (docs/refinement.md#random-walk steps 1–3)."""
    with autocast(device, pl.amp):
        edge = edge_map(model, image_pair(image, device), min_size=pl.pad_size)
    walk_device = device if pl.method == "sparse" else None
    return random_walk(cams, edge.float().cpu().numpy(), beta=pl.beta, exp_times=pl.exp_times,
                       radius=pl.radius, method=pl.method, device=walk_device)


def label_from_walk(rw: np.ndarray, keys: np.ndarray, image_size: tuple[int, int],
                    bg_thres: float) -> np.ndarray:
    """The pseudo label (H, W) uint8 from stored walk maps (docs/refinement.md#random-walk steps
    4–5)."""
    return propagated_to_label(rw.astype(np.float32), keys, image_size, bg_thres)


def run(cfg: Config) -> dict:
    return dist_utils.in_process_group(make_pseudo_labels, cfg)


@torch.no_grad()
def make_pseudo_labels(cfg: Config, ctx: DistContext) -> dict:
    """Write <run_dir>/pseudo_labels/<name>.png and walks/<name>.npz for the split
    (docs/refinement.md#random-walk)."""
    pl = cfg.pseudo_labels
    keep_freed_memory()  # docs/performance.md#make-cam
    model = load_irnet(cfg, ctx.device)  # a wrong checkpoint fails before any data is read
    run_dir = RunDir(cfg)
    layout = open_dataset(cfg.data)
    names, labels = layout.split_with_labels(pl.split)
    require_input(cfg, "make_cam", run_dir.cams)
    cam_paths = dict(zip(names, check_cam_files(layout, run_dir.cams, names, labels, "cam",
                                                stride4_size)))

    auto = is_auto(pl.bg_thres)  # labels only once every walk exists

    def process(todo: list[str]) -> Iterator[None]:
        for name in todo:
            image = read_image(layout.image_path(name))
            keys, cams = load_cam(cam_paths[name], "cam")
            rw = walk_image(model, image, cams, pl, ctx.device).astype(pl.walk_dtype)
            save_npz(run_dir.walk_file(name), rw=rw, keys=keys)  # the PNG last: marks "done"
            if not auto:
                save_label_png(run_dir.pseudo_label_file(name),
                               label_from_walk(rw, keys, image.shape[:2], pl.bg_thres))
            yield None

    label_dir, walk_dir = run_dir.pseudo_labels, run_dir.walks
    done_file = run_dir.walk_file if auto else run_dir.pseudo_label_file
    outputs = ImageOutputs((label_dir, walk_dir), lambda name: [done_file(name)],
                           ("*.png", "*.npz"))
    result = run_per_image("pseudo_labels", names, outputs, stage_record(cfg, "pseudo_labels"),
                           cfg.overwrite, ctx, process)
    chosen = labels_at_auto_threshold(run_dir, layout, names, ctx) if auto else None
    bg_thres = chosen["bg_thres"] if chosen else pl.bg_thres
    log.info("pseudo-labels: %d label files in %s (bg_thres %g%s), walks in %s", len(names),
             label_dir, bg_thres, f", auto: {chosen['rule']}" if chosen else "", walk_dir)
    return {"label_dir": str(label_dir), "walk_dir": str(walk_dir), "split": pl.split,
            "images": len(names), "computed": len(result.computed), "bg_thres": bg_thres,
            "auto": chosen}


def labels_at_auto_threshold(run_dir: RunDir, layout: Any, names: list[str],
                             ctx: DistContext) -> dict[str, Any]:
    """`pseudo_labels.bg_thres=auto`: Otsu over every stored walk, or the best threshold on the
    masks where only some images have one (docs/method.md#auto-thresholds), then this rank's
    labels from their walks at that threshold."""
    def walked(name: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        arrays = load_npz(run_dir.walk_file(name))
        size = image_size(layout.image_path(name))
        return np.asarray(arrays["keys"], np.int64), arrays["rw"].astype(np.float32), size

    def labelled_walk(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keys, rw, size = walked(name)
        return layout.read_checked_mask(name), upsample_walk(rw, size), keys

    labelled = calibration_names(layout.masked_names(names), names)
    if labelled:  # a handful of labelled images: the walk threshold best on their masks
        chosen = best_on_masks(map(labelled_walk, labelled), layout.num_classes + 1)
        chosen["bg_thres"] = chosen.pop("threshold")
    else:
        chosen = auto_walk_threshold(upsample_walk(rw, size)
                                     for _, rw, size in map(walked, names))
    for name in dist_utils.shard(list(names), ctx):
        keys, rw, size = walked(name)
        save_label_png(run_dir.pseudo_label_file(name),
                       label_from_walk(rw, keys, size, chosen["bg_thres"]))
    dist_utils.barrier(ctx)
    return chosen
