"""Inter-pixel relation labels from CAMs: two CRF passes and IRNet's combination rule
(docs/refinement.md#ir-labels).

Confident foreground comes from a high threshold, confident background from a low one; pixels
between the two are ignored (255) when IRNet's affinity targets are built
(docs/refinement.md#training-targets).
"""

from __future__ import annotations

import numpy as np

from vwe.refine.crf import crf_inference_labels

IGNORE = 255


def _check(image: np.ndarray, high_res: np.ndarray, keys: np.ndarray, fg_thres: float,
           bg_thres: float) -> None:
    """Shape and range checks (programming errors; the stage turns them into VweError)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if high_res.ndim != 3 or high_res.shape[1:] != image.shape[:2]:
        raise ValueError(f"high_res must be (K, H, W) with (H, W) = {image.shape[:2]}, "
                         f"got {high_res.shape}")
    if keys.shape != (high_res.shape[0],):
        raise ValueError(f"keys must be (K,) with K = {high_res.shape[0]}, got {keys.shape}")
    if keys.size and (keys.min() < 0 or keys.max() > 253):
        raise ValueError(f"keys must be class indices in [0, 253], got {keys}")
    if not 0.0 <= bg_thres <= fg_thres <= 1.0:
        raise ValueError(f"need 0 <= bg_thres <= fg_thres <= 1, got {bg_thres}, {fg_thres}")


def threshold_labels(high_res: np.ndarray, thres: float) -> np.ndarray:
    """Argmax over [threshold plane; CAMs]: 0 background, k the k-th CAM
    (docs/refinement.md#ir-labels step 2)."""
    plane = np.full((1, *high_res.shape[1:]), thres, dtype=np.float32)
    return np.argmax(np.concatenate([plane, high_res.astype(np.float32)]), axis=0)


def crf_passes(image: np.ndarray, high_res: np.ndarray, keys_ext: np.ndarray,
               thresholds: tuple[float, ...]) -> list[np.ndarray]:
    """Per threshold: threshold plane + argmax, CRF over K+1 labels, mapped through keys_ext
    (docs/refinement.md#ir-labels steps 2–3); the passes share one CRF's pairwise terms."""
    labels = [threshold_labels(high_res, thres) for thres in thresholds]
    return [keys_ext[refined]
            for refined in crf_inference_labels(image, labels, n_labels=len(keys_ext))]


def combine_confident(fg_conf: np.ndarray, bg_conf: np.ndarray) -> np.ndarray:
    """conf = fg_conf; 255 where fg_conf is 0; 0 where both are 0 (docs/refinement.md#ir-labels step
    4).

    The class always comes from the fg pass, even where the bg pass disagrees.
    """
    conf = fg_conf.astype(np.uint8)
    conf[fg_conf == 0] = IGNORE
    conf[(fg_conf == 0) & (bg_conf == 0)] = 0
    return conf


def ir_label(image: np.ndarray, high_res: np.ndarray, keys: np.ndarray, fg_thres: float = 0.30,
             bg_thres: float = 0.05) -> np.ndarray:
    """IR label (H, W) uint8: 0 background, class index + 1 foreground, 255 uncertain
    (docs/refinement.md#ir-labels).

    `image` is the raw uint8 (H, W, 3) image, `high_res` the (K, H, W) max-normalised CAMs and
    `keys` their 0-based class indices. An image without classes is all background.
    """
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    _check(image, high_res, keys, fg_thres, bg_thres)
    if keys.size == 0:
        return np.zeros(image.shape[:2], dtype=np.uint8)
    keys_ext = np.concatenate([[0], keys + 1]).astype(np.uint8)
    fg_conf, bg_conf = crf_passes(image, high_res, keys_ext, (fg_thres, bg_thres))
    return combine_confident(fg_conf, bg_conf)
