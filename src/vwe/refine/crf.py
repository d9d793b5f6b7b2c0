"""Dense CRF (pydensecrf): hard-label refinement for IR labels and soft refinement for DeepLab.

`crf_inference_label` is IRNet's `crf_inference_label` (docs/refinement.md#ir-labels);
`crf_inference_prob` is the DeepLab CRF with the KZ/RL/CL/ReCAM parameters as defaults
(docs/segmentation.md#dense-crf). pydensecrf needs the image as C-contiguous uint8 (H, W, 3); both
functions make sure of that.
"""

from __future__ import annotations

import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_labels, unary_from_softmax


def _crf_image(image: np.ndarray) -> np.ndarray:
    """The image as pydensecrf wants it: C-contiguous uint8 (H, W, 3)
    (docs/segmentation.md#dense-crf)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def crf_inference_label(image: np.ndarray, labels: np.ndarray, n_labels: int, t: int = 10,
                        gt_prob: float = 0.7) -> np.ndarray:
    """Refine a hard label map (values 0..n_labels−1) with IRNet's dense CRF
    (docs/refinement.md#ir-labels): (H, W) int64.

    Unary −log(gt_prob) for the given label and −log((1−gt_prob)/(n−1)) for the others, label 0
    included (zero_unsure=False); Gaussian sxy=3 compat=3; bilateral sxy=50 srgb=5 compat=10;
    argmax of Q after `t` mean-field iterations.
    """
    return crf_inference_labels(image, [labels], n_labels, t, gt_prob)[0]


def crf_inference_labels(image: np.ndarray, label_maps: list[np.ndarray], n_labels: int,
                         t: int = 10, gt_prob: float = 0.7) -> list[np.ndarray]:
    """`crf_inference_label` of several label maps of one image: the pairwise terms depend on
    the image alone, so their lattices are built once and each map only sets its unary (the
    same Q bit for bit as a CRF of its own; building is 40 % of one CRF at VOC size,
    docs/performance.md#ir-labels)."""
    rgb = _crf_image(image)
    height, width = rgb.shape[:2]
    if n_labels < 2:
        raise ValueError(f"n_labels must be >= 2, got {n_labels}")
    unaries = [_label_unary(labels, n_labels, gt_prob, (height, width)) for labels in label_maps]
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=50, srgb=5, rgbim=rgb, compat=10)
    refined = []
    for unary in unaries:
        crf.setUnaryEnergy(unary)
        q = np.asarray(crf.inference(t)).reshape(n_labels, height, width)
        refined.append(np.argmax(q, axis=0))
    return refined


def _label_unary(labels: np.ndarray, n_labels: int, gt_prob: float,
                 shape: tuple[int, int]) -> np.ndarray:
    if labels.shape != shape:
        raise ValueError(f"labels must be (H, W) = {shape}, got {labels.shape}")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= n_labels:
        raise ValueError(f"labels must lie in [0, {n_labels}), "
                         f"got [{labels.min()}, {labels.max()}]")
    return unary_from_labels(labels, n_labels, gt_prob=gt_prob, zero_unsure=False)


def crf_inference_prob(image: np.ndarray, probs: np.ndarray, t: int = 10, gauss_sxy: float = 1,
                       gauss_compat: float = 3, bi_sxy: float = 67, bi_srgb: float = 3,
                       bi_compat: float = 4) -> np.ndarray:
    """Refine class probabilities (C, H, W) with a dense CRF; returns Q (C, H, W) float32.

    Unary −log(clip(probs, 1e-5)); defaults are the DeepLab CRF of KZ, RL (final), CL, LPCAM and
    ReCAM: 10 iterations, pos_w 3, pos_xy_std 1, bi_w 4, bi_xy_std 67, bi_rgb_std 3
    (docs/segmentation.md#dense-crf).
    """
    rgb = _crf_image(image)
    height, width = rgb.shape[:2]
    if probs.ndim != 3 or probs.shape[1:] != (height, width):
        raise ValueError(f"probs must be (C, {height}, {width}), got {probs.shape}")
    n_classes = probs.shape[0]
    crf = dcrf.DenseCRF2D(width, height, n_classes)
    unary = unary_from_softmax(probs.astype(np.float32))
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    crf.addPairwiseGaussian(sxy=gauss_sxy, compat=gauss_compat)
    crf.addPairwiseBilateral(sxy=bi_sxy, srgb=bi_srgb, rgbim=rgb, compat=bi_compat)
    q = np.asarray(crf.inference(t), dtype=np.float32)
    return q.reshape(n_classes, height, width)
