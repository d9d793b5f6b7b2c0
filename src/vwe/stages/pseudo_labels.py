"""`vwe pseudo-labels`: CAMs propagated by a random walk over IRNet's affinities
(docs/refinement.md#random-walk).

Per image of `pseudo_labels.split`: the boundary map of the image and its mirror (logits averaged
before the sigmoid) at stride 4; affinities on pairs within radius 5; the K foreground CAMs
(`cam`, stride 4) times (1 − boundary) walked T^(2^8) (β = 10); ×4 bilinear, divided by the global
max; a constant background plane 0.25 and the argmax: a uint8 PNG with no ignore label. With
`pseudo_labels.scale=plane` a plane of ones is walked with the CAMs and each walked CAM is
divided by it, so the background threshold is a CAM score
(docs/refinement.md#walked-background-plane).
The walk itself is stored too (`<run_dir>/walks/<name>.npz`: `rw` at stride 4 in
`pseudo_labels.walk_dtype`, `keys`, and `plane` on that scale) and the PNG is made from exactly
the stored values, so `vwe eval-labels` can sweep the background threshold without walking again
and reproduce the PNGs bit for bit. Resumable per image on the per-image runner (PNG written
last, atomically); ranks take strided shares.
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
from vwe.errors import VweError
from vwe.inference.thresholds import (
    CLASS_POWER,
    auto_walk_threshold,
    background_score_of,
    best_on_masks,
    calibration_names,
    cam_histograms,
    cam_score_histogram,
    class_background_scores,
    is_auto,
)
from vwe.models.backbone import fold_batch_norm
from vwe.models.irn import IRNet, edge_map
from vwe.refine.random_walk import random_walk, walk_scores, walk_to_labels
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


def walk_with_plane(model: IRNet, image: np.ndarray, cams: np.ndarray, pl: PseudoLabelConfig,
                    device: torch.device) -> tuple[np.ndarray, np.ndarray | None]:
    """The walk maps (K, h, w) and, for `scale=plane`, the walked plane of ones (1, h, w): one
    walk of K + 1 channels, so both see the same boundaries."""
    if pl.scale != "plane":
        return walk_image(model, image, cams, pl, device), None
    ones = np.ones((1, *cams.shape[1:]), np.float32)
    both = walk_image(model, image, np.concatenate([cams, ones]), pl, device)
    return both[:-1], both[-1:]


def label_from_walk(rw: np.ndarray, keys: np.ndarray, image_size: tuple[int, int],
                    bg_thres: float | np.ndarray, plane: np.ndarray | None = None
                    ) -> np.ndarray:
    """The pseudo label (H, W) uint8 from stored walk maps (docs/refinement.md#random-walk steps
    4–5; with a plane docs/refinement.md#walked-background-plane)."""
    return walk_to_labels(walk_scores(rw, plane, image_size), keys, bg_thres)


def run(cfg: Config) -> dict:
    return dist_utils.in_process_group(make_pseudo_labels, cfg)


@torch.no_grad()
def make_pseudo_labels(cfg: Config, ctx: DistContext) -> dict:
    """Write <run_dir>/pseudo_labels/<name>.png and walks/<name>.npz for the split
    (docs/refinement.md#random-walk)."""
    pl = cfg.pseudo_labels
    if pl.class_thresholds and not (is_auto(pl.bg_thres) and pl.scale == "plane"):
        raise VweError("pseudo_labels.class_thresholds=true needs pseudo_labels.scale=plane and "
                       "pseudo_labels.bg_thres=auto (the per-class scores scale the auto one)")
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
            rw, plane = walk_with_plane(model, image, cams, pl, ctx.device)
            rw = rw.astype(pl.walk_dtype)
            planes = {} if plane is None else {"plane": plane.astype(pl.walk_dtype)}
            save_npz(run_dir.walk_file(name), rw=rw, keys=keys, **planes)  # PNG last: "done"
            if not auto:
                save_label_png(run_dir.pseudo_label_file(name),
                               label_from_walk(rw, keys, image.shape[:2], pl.bg_thres,
                                               planes.get("plane")))
            yield None

    label_dir, walk_dir = run_dir.pseudo_labels, run_dir.walks
    done_file = run_dir.walk_file if auto else run_dir.pseudo_label_file
    outputs = ImageOutputs((label_dir, walk_dir), lambda name: [done_file(name)],
                           ("*.png", "*.npz"))
    result = run_per_image("pseudo_labels", names, outputs, stage_record(cfg, "pseudo_labels"),
                           cfg.overwrite, ctx, process)
    chosen = labels_at_auto_threshold(run_dir, layout, names, pl.scale, ctx,
                                      pl.class_thresholds) if auto else None
    bg_thres = chosen["bg_thres"] if chosen else pl.bg_thres
    per_class = chosen.get("class_bg_thres") if chosen else None
    log.info("pseudo-labels: %d label files in %s (bg_thres %g%s%s), walks in %s", len(names),
             label_dir, bg_thres, f", auto: {chosen['rule']}" if chosen else "",
             "; per class: " + ", ".join(f"{k} {v:g}" for k, v in per_class.items())
             if per_class else "", walk_dir)
    return {"label_dir": str(label_dir), "walk_dir": str(walk_dir), "split": pl.split,
            "images": len(names), "computed": len(result.computed), "bg_thres": bg_thres,
            "auto": chosen}


def plane_background_scores(run_dir: RunDir, layout: Any, names: list[str], per_class: bool
                            ) -> tuple[dict[str, Any], np.ndarray | None]:
    """`auto` on the walked CAM scores: the CAM background score over the split's CAMs and,
    with `per_class`, one score per class (docs/method.md#class-background-scores; None
    without), from one read of the CAMs."""
    cam_files = (run_dir.cam_file(name) for name in names)
    if per_class:
        highest, by_class = cam_histograms(cam_files, layout.num_classes)
    else:
        highest = cam_score_histogram(cam_files)
    score = background_score_of(highest)
    chosen = {"rule": f"the CAM background score: {score['rule']}", "calibrated": False,
              "bg_thres": score["bkg_score"], "pixels": score["pixels"]}
    if not per_class:
        return chosen, None
    per_key = class_background_scores(score["bkg_score"], by_class).round(4)
    chosen["rule"] += f"; per class × (class mean / pooled mean)^{CLASS_POWER:g}"
    chosen["class_bg_thres"] = dict(zip(layout.class_names, per_key.tolist()))
    return chosen, per_key


def labels_at_auto_threshold(run_dir: RunDir, layout: Any, names: list[str], scale: str,
                             ctx: DistContext, per_class: bool = False) -> dict[str, Any]:
    """`pseudo_labels.bg_thres=auto` (docs/method.md#auto-thresholds): the best threshold on the
    masks where only some images have one; else with `scale=plane` the CAM background score's
    rule over the split's CAMs (`per_class`: scaled per class,
    docs/method.md#class-background-scores), with `scale=max` plain Otsu over every stored
    walk. Then this rank's labels from their walks at that threshold."""
    def walked(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[int, int]]:
        arrays = load_npz(run_dir.walk_file(name))
        plane = arrays.get("plane") if scale == "plane" else None
        if scale == "plane" and plane is None:
            raise VweError(f"walk file {run_dir.walk_file(name)} has no plane (made with "
                           "pseudo_labels.scale=max); delete the walks folder and rerun "
                           "`vwe pseudo-labels`")
        return (np.asarray(arrays["keys"], np.int64), arrays["rw"], plane,
                image_size(layout.image_path(name)))

    def labelled_walk(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keys, rw, plane, size = walked(name)
        return layout.read_checked_mask(name), walk_scores(rw, plane, size), keys

    labelled = calibration_names(layout.masked_names(names), names)
    per_key = None  # one threshold per class, else chosen["bg_thres"] for every class
    if labelled:  # a handful of labelled images: the walk threshold best on their masks
        chosen = best_on_masks(map(labelled_walk, labelled), layout.num_classes + 1)
        chosen["bg_thres"] = chosen.pop("threshold")
    elif scale == "plane":
        chosen, per_key = plane_background_scores(run_dir, layout, names, per_class)
    else:
        chosen = auto_walk_threshold(walk_scores(rw, None, size)
                                     for _, rw, _, size in map(walked, names))
    for name in dist_utils.shard(list(names), ctx):
        keys, rw, plane, size = walked(name)
        threshold = chosen["bg_thres"] if per_key is None else per_key[keys]
        save_label_png(run_dir.pseudo_label_file(name),
                       label_from_walk(rw, keys, size, threshold, plane))
    dist_utils.barrier(ctx)
    return chosen
