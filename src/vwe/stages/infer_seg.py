"""`vwe infer-seg`: DeepLab predictions as palette PNGs, without and with the dense CRF.

Whole image, batch 1, the model's MSC (1, 0.5, 0.75) with max fusion (KZ/RL); optional outer scales
and flip (irn#26, ToCo), each upsampled to H×W and fused; softmax → argmax gives `raw/<name>.png`,
the dense CRF on the raw RGB image → `crf/<name>.png` (docs/segmentation.md#inference,
docs/segmentation.md#dense-crf). The CRF runs in CPU worker processes while the network goes on.
Ranks take strided shares of the split; an image with all its PNGs is skipped, so an interrupted run
resumes (the folder's `record.json` holds the checkpoint's hash and the settings: a changed one is
recomputed or refused, never mixed in).
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vwe.config import Config, CrfConfig
from vwe.data.io import ensure_writable_dir, read_image, save_label_png
from vwe.data.segmentation import normalize_pixels
from vwe.data.voc import VocLayout, open_dataset
from vwe.engine import distributed as dist_utils
from vwe.engine.checkpoint import load_trained
from vwe.engine.distributed import DistContext
from vwe.engine.per_image import ImageOutputs, run_per_image
from vwe.engine.run_dir import RunDir
from vwe.errors import VweError
from vwe.models.deeplab import CAFFE_MEAN_BGR, MSC, input_normalization
from vwe.refine.crf import crf_inference_prob
from vwe.stage_records import stage_record

log = logging.getLogger(__name__)

FUSIONS = ("sum", "max", "mean")
CRF_IMAGES = ("raw", "kz_quirk")
ARCH_KEYS = ("backbone", "layout")  # seg.* keys that must match the checkpoint


def fuse(maps: Sequence[torch.Tensor], how: str) -> torch.Tensor:
    """Element-wise sum, max or mean of equally shaped logits."""
    stacked = torch.stack(list(maps))
    if how == "sum":
        return stacked.sum(0)
    if how == "max":
        return stacked.amax(0)
    if how == "mean":
        return stacked.mean(0)
    raise VweError(f"fusion '{how}' is unknown; choose one of {', '.join(FUSIONS)}")


@torch.no_grad()
def predict_logits(model: MSC, pixels: np.ndarray, scales: Sequence[float], flip: bool,
                   flip_fusion: str = "sum", scale_fusion: str = "max") -> torch.Tensor:
    """(C, H, W) logits of one normalised (H, W, 3) image: outer scales × flip, fused
    (docs/segmentation.md#inference)."""
    device = next(model.parameters()).device
    image = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None].to(device)
    height, width = pixels.shape[:2]
    per_scale = []
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = image if size == (height, width) else F.interpolate(
            image, size=size, mode="bilinear", align_corners=False)
        batch = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        logits = F.interpolate(model(batch).float(), size=(height, width), mode="bilinear",
                               align_corners=False)
        per_scale.append(fuse([logits[0], logits[1].flip(-1)], flip_fusion) if flip
                         else logits[0])
    return fuse(per_scale, scale_fusion)


def crf_image(image: np.ndarray, how: str) -> np.ndarray:
    """The CRF's image: raw RGB uint8, or KZ's mean-subtracted BGR cast to uint8 (wraps,
    docs/segmentation.md#dense-crf)."""
    if how == "raw":
        return np.ascontiguousarray(image)
    if how == "kz_quirk":
        shifted = image[..., ::-1].astype(np.float32) - np.asarray(CAFFE_MEAN_BGR, np.float32)
        return np.ascontiguousarray((np.trunc(shifted).astype(np.int64) % 256).astype(np.uint8))
    raise VweError(f"infer_seg.crf.image={how} is unknown; choose raw or kz_quirk")


def crf_kwargs(crf: CrfConfig) -> dict[str, float]:
    """`crf_inference_prob` arguments from the config (pos_* Gaussian, bi_* bilateral)."""
    return {"t": crf.iterations, "gauss_sxy": crf.pos_xy_std, "gauss_compat": crf.pos_w,
            "bi_sxy": crf.bi_xy_std, "bi_srgb": crf.bi_rgb_std, "bi_compat": crf.bi_w}


def load_seg_model(cfg: Config, num_classes: int, device: torch.device) -> MSC:
    """The trained DeepLab as its checkpoint records it (seg.backbone and seg.layout must agree),
    with the MSC scales of seg.msc_scales, or none when infer_seg.msc is off. Fixed batch norm in
    eval equals a BatchNorm2d in eval: one build serves both seg.frozen_bn."""
    seg = cfg.seg
    must_match = {f"seg.{key}": (key, getattr(seg, key)) for key in ARCH_KEYS}
    scales = list(seg.msc_scales) if cfg.infer_seg.msc else []
    trained = load_trained(RunDir(cfg).seg_checkpoint, "deeplab", num_classes, must_match,
                           overrides={"msc_scales": scales})
    return trained.model.to(device)


def run(cfg: Config) -> dict[str, Any]:
    return dist_utils.in_process_group(infer, cfg)


def infer(cfg: Config, ctx: DistContext) -> dict[str, Any]:
    infer_cfg = cfg.infer_seg
    out_dir = RunDir(cfg).infer_seg_out
    kinds = ("raw", "crf") if infer_cfg.crf.enabled else ("raw",)
    for kind in kinds:
        ensure_writable_dir(out_dir / kind, "infer_seg.out_dir")
    layout = open_dataset(cfg.data)
    names = layout.read_split(infer_cfg.split)
    model = load_seg_model(cfg, layout.num_classes + 1, ctx.device)
    outputs = ImageOutputs((out_dir,), lambda n: [RunDir.prediction_file(out_dir, k, n)
                                                  for k in kinds], ("raw/*.png", "crf/*.png"))
    result = run_per_image("infer_seg", names, outputs, stage_record(cfg, "infer_seg"),
                           cfg.overwrite, ctx,
                           lambda todo: predict_all(cfg, model, layout, todo, out_dir))
    log.info("infer-seg: %d images of %s in %s", len(names), infer_cfg.split, out_dir)
    return {"pred_dir": str(out_dir), "split": infer_cfg.split, "images": len(names),
            "computed": len(result.computed), "crf": infer_cfg.crf.enabled}


def predict_all(cfg: Config, model: MSC, layout: VocLayout, names: list[str],
                out_dir: Path) -> Iterator[str]:
    """Network on this process, CRF in `crf.workers` processes (at most 2 per worker queued);
    yields each image's name once all its PNGs are written."""
    infer_cfg, crf = cfg.infer_seg, cfg.infer_seg.crf
    mean, std, bgr = input_normalization(cfg.seg.layout)
    pool = None
    if crf.enabled and crf.workers > 0 and names:
        pool = ProcessPoolExecutor(crf.workers, mp_context=multiprocessing.get_context("spawn"))
    pending: deque[tuple[str, Future]] = deque()
    try:
        for name in names:
            image = read_image(layout.image_path(name))
            logits = predict_logits(model, normalize_pixels(image, mean, std, bgr),
                                    infer_cfg.scales, infer_cfg.flip, infer_cfg.flip_fusion,
                                    infer_cfg.scale_fusion)
            probs = torch.softmax(logits, dim=0).cpu().numpy()
            _write(RunDir.prediction_file(out_dir, "raw", name), probs)
            if crf.enabled and pool is not None:
                pending.append((name, pool.submit(crf_inference_prob,
                                                  crf_image(image, crf.image), probs,
                                                  **crf_kwargs(crf))))
            else:
                if crf.enabled:
                    _write(RunDir.prediction_file(out_dir, "crf", name),
                           crf_inference_prob(crf_image(image, crf.image), probs,
                                              **crf_kwargs(crf)))
                yield name
            while len(pending) > 2 * crf.workers:
                yield _finish(pending.popleft(), out_dir)
        while pending:
            yield _finish(pending.popleft(), out_dir)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _finish(job: tuple[str, Future], out_dir: Path) -> str:
    name, future = job
    _write(RunDir.prediction_file(out_dir, "crf", name), future.result())
    return name


def _write(path: Path, scores: np.ndarray) -> None:
    """Argmax of (C, H, W) scores as a VOC palette PNG, atomically."""
    save_label_png(path, scores.argmax(axis=0).astype(np.uint8))
