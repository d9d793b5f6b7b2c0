"""DeepLab logits of one image over outer scales and flips, and the dense CRF's inputs
(docs/segmentation.md#inference, docs/segmentation.md#dense-crf): the maths `vwe infer-seg` and
`vwe predict` share."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vwe.config import CrfConfig
from vwe.errors import VweError
from vwe.models.deeplab import CAFFE_MEAN_BGR, MSC

FUSIONS = ("sum", "max", "mean")
CRF_IMAGES = ("raw", "kz_quirk")


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
    return predict_logits_batch(model, pixels[None], scales, flip, flip_fusion, scale_fusion)[0]


# the smallest side a network input gets: a smaller image (a thumbnail, a 1-pixel file, a tiny
# outer scale) is enlarged to it, so MSC's 0.5 and the stride-16 trunk still see pixels
MIN_FORWARD_SIDE = 16


def forward_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(round(H·s), round(W·s)), enlarged (aspect kept) when its short side is below
    MIN_FORWARD_SIDE; images of ordinary size are untouched."""
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if min(size) >= MIN_FORWARD_SIDE:
        return size
    grow = MIN_FORWARD_SIDE / min(size)
    return (math.ceil(size[0] * grow), math.ceil(size[1] * grow))


@torch.no_grad()
def predict_logits_batch(model: MSC, pixels: np.ndarray, scales: Sequence[float], flip: bool,
                         flip_fusion: str = "sum", scale_fusion: str = "max") -> torch.Tensor:
    """(N, C, H, W) logits of N normalised (N, H, W, 3) images of one size, in one forward per
    scale (the images, then their mirrors)."""
    device = next(model.parameters()).device
    images = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))).to(device)
    count, height, width = pixels.shape[:3]
    per_scale = []
    for scale in scales:
        size = forward_size(height, width, scale)
        scaled = images if size == (height, width) else F.interpolate(
            images, size=size, mode="bilinear", align_corners=False)
        batch = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        logits = F.interpolate(model(batch).float(), size=(height, width), mode="bilinear",
                               align_corners=False)
        per_scale.append(fuse([logits[:count], logits[count:].flip(-1)], flip_fusion) if flip
                         else logits)
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
