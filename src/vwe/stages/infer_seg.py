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
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vwe.config import Config
from vwe.data.io import ensure_writable_dir, read_image, save_label_png
from vwe.data.segmentation import normalize_pixels
from vwe.data.voc import VocLayout, open_dataset
from vwe.engine import distributed as dist_utils
from vwe.engine.checkpoint import load_trained
from vwe.engine.distributed import DistContext
from vwe.engine.per_image import ImageOutputs, run_per_image
from vwe.engine.precision import autocast
from vwe.engine.run_dir import RunDir
from vwe.inference.segmentation import crf_image, crf_kwargs, predict_logits
from vwe.inference.trained_scale import LongSideRange, at_trained_scale, trained_long_side
from vwe.models.deeplab import MSC, input_normalization
from vwe.refine.crf import crf_inference_prob
from vwe.stage_records import stage_record

log = logging.getLogger(__name__)

ARCH_KEYS = ("backbone", "layout")  # seg.* keys that must match the checkpoint


def load_seg_model(cfg: Config, num_classes: int, device: torch.device
                   ) -> tuple[MSC, LongSideRange | None]:
    """The trained DeepLab as its checkpoint records it (seg.backbone and seg.layout must agree),
    with the MSC scales of seg.msc_scales, or none when infer_seg.msc is off. Fixed batch norm in
    eval equals a BatchNorm2d in eval: one build serves both seg.frozen_bn. Also the long sides
    it trained at (docs/pipeline.md#trained-scale)."""
    seg = cfg.seg
    must_match = {f"seg.{key}": (key, getattr(seg, key)) for key in ARCH_KEYS}
    scales = list(seg.msc_scales) if cfg.infer_seg.msc else []
    trained = load_trained(RunDir(cfg).seg_checkpoint, "deeplab", num_classes, must_match,
                           overrides={"msc_scales": scales})
    long_range = trained_long_side(trained.state) if cfg.infer_seg.trained_scale else None
    return trained.model.to(device), long_range


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
    model, long_range = load_seg_model(cfg, layout.num_classes + 1, ctx.device)
    outputs = ImageOutputs((out_dir,), lambda n: [RunDir.prediction_file(out_dir, k, n)
                                                  for k in kinds], ("raw/*.png", "crf/*.png"))
    result = run_per_image("infer_seg", names, outputs, stage_record(cfg, "infer_seg"),
                           cfg.overwrite, ctx,
                           lambda todo: predict_all(cfg, model, layout, todo, out_dir,
                                                    long_range))
    log.info("infer-seg: %d images of %s in %s", len(names), infer_cfg.split, out_dir)
    return {"pred_dir": str(out_dir), "split": infer_cfg.split, "images": len(names),
            "computed": len(result.computed), "crf": infer_cfg.crf.enabled}


def predict_all(cfg: Config, model: MSC, layout: VocLayout, names: list[str],
                out_dir: Path, long_range: LongSideRange | None = None) -> Iterator[str]:
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
            with autocast(next(model.parameters()).device, infer_cfg.amp):
                scales = at_trained_scale(infer_cfg.scales, image.shape[:2], long_range)
                logits = predict_logits(model, normalize_pixels(image, mean, std, bgr),
                                        scales, infer_cfg.flip, infer_cfg.flip_fusion,
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
