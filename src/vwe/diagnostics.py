"""Degenerate results said in one line where they are made (docs/pipeline.md#degenerate-results).

A number printed beside the paper's is read as a result; these checks say when it is not one: a
prediction that one class covers, predictions that do not depend on the image, a best threshold
at the edge of its sweep, a score no better than a trivial baseline, a training loss that does
not fall. Each returns the warning's text or None; the stages log it and keep it in their JSON.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DOMINANT_SHARE = 0.98  # one class predicted on more of the valid pixels than this
SHARE_SPREAD = 1e-3  # predicted class shares that vary less than this across images


def all_background_miou(confusion: np.ndarray) -> float:
    """mIoU of predicting background everywhere, from the GT rows of a confusion matrix:
    IoU_bg = background pixels / valid pixels, every other present class 0."""
    gt_pixels = np.asarray(confusion).sum(axis=1)
    present = gt_pixels > 0
    if not present.any():
        return float("nan")
    return float(gt_pixels[0] / gt_pixels.sum()) / int(present.sum())


def painted_tags(gt: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The image painted with its first tag (class id + 1) everywhere: the baseline that a CAM
    must beat to say anything about where the object is."""
    tags = np.flatnonzero(np.asarray(label) > 0)
    value = int(tags[0]) + 1 if tags.size else 0
    return np.full(gt.shape, value, dtype=np.int64)


def dominant_class(confusion: np.ndarray, class_names: Sequence[str], what: str) -> str | None:
    """One class predicted on nearly every pixel."""
    predicted = np.asarray(confusion).sum(axis=0).astype(np.float64)
    if predicted.sum() == 0:
        return None
    top = int(predicted.argmax())
    share = predicted[top] / predicted.sum()
    if share <= DOMINANT_SHARE:
        return None
    return (f"{what}: '{class_names[top]}' covers {100 * share:.1f} % of all pixels: the "
            "predictions say almost nothing; check the training loss and the labels it "
            "learned from")


def at_sweep_edge(best: float, thresholds: Sequence[float], what: str, key: str) -> str | None:
    """The sweep's best threshold on the first or last value: the best lies outside it."""
    values = [float(t) for t in thresholds]
    if len(values) < 3 or not (np.isclose(best, values[0]) or np.isclose(best, values[-1])):
        return None
    return (f"{what}: the best background threshold {best:g} is at the edge of the sweep "
            f"[{values[0]:g}, {values[-1]:g}]: widen {key}_start/{key}_stop, or the maps "
            "carry no usable signal")


def below_baseline(score: float, baselines: dict[str, float], what: str) -> str | None:
    """A score at or below a trivial baseline (all background, the tag painted everywhere)."""
    beaten = {name: value for name, value in baselines.items()
              if np.isfinite(value) and score <= value + 1e-9}
    if not beaten:
        return None
    named = ", ".join(f"{name} {100 * value:.1f}" for name, value in beaten.items())
    return (f"{what}: mIoU {100 * score:.1f} is no better than a trivial baseline ({named}): "
            "this is not a result")


def input_independent(shares: np.ndarray, what: str) -> str | None:
    """Every image's predicted class shares the same: the prediction ignores the image.
    `shares` is (images, classes), each row summing to 1."""
    shares = np.asarray(shares, dtype=np.float64)
    if shares.shape[0] < 2 or float(shares.std(axis=0).max()) >= SHARE_SPREAD:
        return None
    return (f"{what}: every image gets the same class shares ({shares.shape[0]} images): the "
            "predictions do not depend on the input")


def loss_not_falling(totals: Sequence[float], what: str, window: float = 0.1) -> str | None:
    """The mean loss of the last tenth of the steps no lower than that of the first tenth."""
    count = len(totals)
    if count < 20:
        return None
    size = max(int(count * window), 2)
    first, last = float(np.mean(totals[:size])), float(np.mean(totals[-size:]))
    if not (np.isfinite(first) and np.isfinite(last)) or last < first:
        return None
    return (f"{what}: the training loss did not fall ({first:.4f} over the first {size} steps, "
            f"{last:.4f} over the last {size}): lower or raise the learning rate, or check "
            "the labels")
