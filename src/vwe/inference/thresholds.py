"""`auto` thresholds: chosen from the CAMs alone, without masks (docs/method.md#auto-thresholds).

The background score that separates objects from background: every pixel's highest score over
the image's tagged classes, pooled over the split, split in two by Otsu's rule (the threshold
that maximises the between-class variance of the histogram) applied to the scores raised to
0.7, so that the narrow background mode near 0 and the wide object mode weigh alike. IR labels'
confident foreground sits above that score t: fg = t + 0.15 (IRNet's 0.30 above VOC's best score
0.15). Their confident background is the 80 % quantile of the scores below t (floor 0.05): where
objects' bodies are barely lit (drawings) the background mode sits near 0 and so does bg; where
the background itself is lit (photographs) bg rises with it. The walk's background threshold
is the same score t on walked CAM scores (`pseudo_labels.scale=plane`), or plain Otsu over
IRNet's max-divided walk maps (`scale=max`).

Where only some images of the split have masks (a handful labelled on purpose), `auto` is
calibrated on those instead: the threshold with the best mIoU on their masks. A split whose
every image has a mask is an evaluation set, and `auto` stays mask-free there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from vwe.data.io import load_npz
from vwe.metrics import segmentation_scores, sweep_confusions

AUTO = "auto"
BINS = 200
CALIBRATION_GRID = np.arange(100) / 100  # 0.00 … 0.99
FG_MARGIN, BG_FLOOR = 0.15, 0.05
# IR labels' confident background: this quantile of the scores below the background score
# (docs/method.md#auto-thresholds: 0.8 sits at about the mean + 1σ of those scores)
BG_QUANTILE = 0.8
# The CAM background score: Otsu on score ** SCORE_POWER. Background scores bunch near 0 while
# object scores spread wide, and plain Otsu (equal spreads assumed) then cuts inside the objects;
# the power stretches the low scores and compresses the high ones. 0.7 measured best over the
# generated variants and MSRC, and held on data not used to choose it. IRNet's max-divided walk
# maps (pseudo_labels.scale=max) keep plain Otsu (power 1): their scale moves with each image's
# maximum and no power followed both drawings and photos (docs/method.md#auto-thresholds)
SCORE_POWER = 0.7
MAX_WALK_POWER = 1.0
# Per-class background scores (pseudo_labels.class_thresholds): t_k = t · (m_k / m)^CLASS_POWER,
# m_k the mean CAM score of class k over the images tagged with it, m the pooled mean: classes
# whose CAMs spread wide need a higher score (docs/method.md#class-background-scores)
CLASS_POWER = 0.5
# Raised with any change to how `auto` chooses that the constants above do not show: a stage
# whose threshold is `auto` records the rule (`auto_rule`), so another rule reruns it
RULE_REVISION = 2  # 1: IR background t − 0.10; 2: the quantile below t


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == AUTO


def auto_rule() -> str:
    """The `auto` rule in one line (revision and constants), for the records of the stages that
    use it: another rule makes them stale."""
    return (f"revision {RULE_REVISION}; otsu on score^{SCORE_POWER:g}, walk "
            f"score^{MAX_WALK_POWER:g}, {BINS} bins; fg + {FG_MARGIN:g}; bg {BG_QUANTILE:g} "
            f"quantile below, floor {BG_FLOOR:g}; calibration grid "
            f"{CALIBRATION_GRID[1] - CALIBRATION_GRID[0]:g}")


def otsu_threshold(histogram: np.ndarray, power: float = 1.0) -> float:
    """Otsu's threshold of a histogram over [0, 1] (equal bins): the bin edge that maximises
    the between-class variance w0·w1·(μ0 − μ1)² of the scores raised to `power` (the edge is
    returned on the original scale)."""
    counts = np.asarray(histogram, dtype=np.float64)
    if counts.sum() <= 0:
        raise ValueError("empty histogram")
    centres = ((np.arange(counts.size) + 0.5) / counts.size) ** power
    weight = np.cumsum(counts) / counts.sum()  # w0 after each bin
    mass = np.cumsum(counts * centres) / counts.sum()
    total = mass[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total * weight - mass) ** 2 / (weight * (1.0 - weight))
    between[~np.isfinite(between)] = -1.0
    return float((int(between.argmax()) + 1) / counts.size)


def cam_histograms(cam_files: Iterable[Path], num_classes: int, bins: int = BINS
                   ) -> tuple[np.ndarray, np.ndarray]:
    """One read of the CAMs for both histograms over [0, 1]: every pixel's highest score (as
    `cam_score_histogram`) and, (num_classes, bins), each class's scores over every pixel of
    the images tagged with it."""
    highest, by_class = np.zeros(bins, np.int64), np.zeros((num_classes, bins), np.int64)
    for path in cam_files:
        arrays = load_npz(path)
        scores = np.asarray(arrays["high_res"], np.float32)
        highest += score_histogram([scores], bins)
        for key, plane in zip(np.asarray(arrays["keys"], np.int64).reshape(-1), scores):
            by_class[key] += score_histogram([plane[None]], bins)
    return highest, by_class


def class_background_scores(score: float, histograms: np.ndarray,
                            power: float = CLASS_POWER) -> np.ndarray:
    """One background score per class: `score` · (class mean / pooled mean)^power over
    (num_classes, bins) score histograms, within [0.01, 0.99]; `score` for a class without
    pixels."""
    counts = np.asarray(histograms, np.float64)
    centres = (np.arange(counts.shape[1]) + 0.5) / counts.shape[1]
    pixels = counts.sum(axis=1)
    if pixels.sum() <= 0:
        raise ValueError("no CAM scores to scale the class scores from")
    pooled = (counts @ centres).sum() / pixels.sum()
    means = np.where(pixels > 0, (counts @ centres) / np.maximum(pixels, 1), pooled)
    return np.clip(score * (means / pooled) ** power, 0.01, 0.99)


def cam_score_histogram(cam_files: Iterable[Path], bins: int = BINS) -> np.ndarray:
    """Histogram over [0, 1] of every pixel's highest fused CAM score (images without a tag
    add nothing)."""
    return score_histogram((np.asarray(load_npz(path)["high_res"], dtype=np.float32)
                            for path in cam_files), bins)


def quantile_below(histogram: np.ndarray, threshold: float, quantile: float) -> float:
    """The `quantile` of a [0, 1] histogram's scores below `threshold` (a bin edge), linear
    within a bin, so never above `threshold`; `threshold` itself where no score lies below
    it."""
    counts = np.asarray(histogram, dtype=np.float64)[:int(round(threshold * len(histogram)))]
    if counts.sum() <= 0:
        return float(threshold)
    cumulative = np.cumsum(counts) / counts.sum()
    index = int(np.searchsorted(cumulative, quantile))
    before = cumulative[index - 1] if index else 0.0
    inside = (quantile - before) / max(cumulative[index] - before, 1e-12)
    return float((index + inside) / len(histogram))


def score_histogram(maps: Iterable[np.ndarray], bins: int = BINS) -> np.ndarray:
    """Histogram over [0, 1] of every pixel's highest score in (K, H, W) maps (K = 0 adds
    nothing)."""
    counts = np.zeros(bins, np.int64)
    for scores in maps:
        if scores.shape[0]:
            counts += np.histogram(np.clip(scores.max(axis=0), 0, 1), bins=bins,
                                   range=(0.0, 1.0))[0]
    return counts


def auto_walk_threshold(walk_maps: Iterable[np.ndarray]) -> dict[str, Any]:
    """The background threshold of IRNet's walk maps (`scale=max`): plain Otsu over the maps as
    pseudo-labels scales them (upsampled, divided by their maximum)."""
    histogram = score_histogram(walk_maps)
    if histogram.sum() == 0:
        raise ValueError("no walk scores to choose a threshold from")
    return {"rule": "otsu over the highest walk score per pixel",
            "bg_thres": round(otsu_threshold(histogram, MAX_WALK_POWER), 4),
            "pixels": int(histogram.sum())}


def auto_background_score(cam_files: Iterable[Path], power: float = SCORE_POWER
                          ) -> dict[str, Any]:
    """The background score and the IR labels' confident thresholds, with their evidence
    (Otsu on score^power)."""
    return background_score_of(cam_score_histogram(cam_files), power)


def background_score_of(histogram: np.ndarray, power: float = SCORE_POWER) -> dict[str, Any]:
    """`auto_background_score` from the histogram of the highest CAM score per pixel."""
    if histogram.sum() == 0:
        raise ValueError("no CAM scores to choose a threshold from")
    score = round(otsu_threshold(histogram, power), 4)
    scale = "" if power == 1 else f", on score^{power:g}"
    return {"rule": f"otsu over the highest CAM score per pixel{scale}",
            "calibrated": False,
            **with_ir_thresholds(score, histogram),
            "pixels": int(histogram.sum()),
            "histogram": histogram.tolist()}


def with_ir_thresholds(score: float, histogram: np.ndarray) -> dict[str, float]:
    """A background score t and the IR labels' confident thresholds from it and the score
    histogram: fg = t + 0.15, bg = max(the 80 % quantile of the scores below t, 0.05)."""
    background = quantile_below(histogram, score, BG_QUANTILE)
    return {"bkg_score": score, "fg_thres": round(min(score + FG_MARGIN, 0.99), 4),
            "bg_thres": round(max(background, BG_FLOOR), 4),
            "ir_rule": f"fg = bkg_score + {FG_MARGIN:g}; bg = the {100 * BG_QUANTILE:g} % "
                       f"quantile of the scores below bkg_score, at least {BG_FLOOR:g}"}


def calibration_names(masked: list[str], names: list[str]) -> list[str]:
    """The images `auto` calibrates on: those with masks when some, not all, have one."""
    return masked if 0 < len(masked) < len(names) else []


def grid_mious(confusions: np.ndarray, num_classes: int) -> np.ndarray:
    """mIoU at every threshold of a (T, n, n) confusion sweep (NaN where no class is present)."""
    names = [str(i) for i in range(num_classes)]
    return np.array([segmentation_scores(conf, names)["miou"] for conf in confusions],
                    np.float64)


def best_on_masks(samples: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
                  num_classes: int) -> dict[str, Any]:
    """The background threshold with the best mIoU over (mask, score maps (K, H, W), 0-based
    keys) of the labelled images, on CALIBRATION_GRID (ties: the lowest)."""
    total = np.zeros((CALIBRATION_GRID.size, num_classes, num_classes), np.int64)
    count = 0
    for mask, maps, keys in samples:
        total += sweep_confusions(mask, maps, keys, CALIBRATION_GRID, num_classes)
        count += 1
    mious = grid_mious(total, num_classes)
    if count == 0 or not np.isfinite(mious).any():
        raise ValueError("no labelled image to calibrate on")
    best = int(np.nanargmax(mious))
    return {"rule": f"best mIoU on the masks of {count} labelled images (calibration)",
            "calibrated": True, "threshold": round(float(CALIBRATION_GRID[best]), 4),
            "miou_on_masks": round(float(mious[best]), 4), "images": count}


def calibrated_background_score(samples: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
                                num_classes: int) -> dict[str, Any]:
    """The background score from labelled images' masks, and the IR thresholds from it and
    those images' scores (the same rules as without masks)."""
    histogram = np.zeros(BINS, np.int64)

    def counted(sample: tuple[np.ndarray, np.ndarray, np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        histogram[:] += score_histogram([sample[1]])
        return sample

    chosen = best_on_masks(map(counted, samples), num_classes)
    return {**chosen, **with_ir_thresholds(chosen.pop("threshold"), histogram)}


def choose_background_score(layout: Any, cam_file: Callable[[str], Path], names: list[str],
                            masked: list[str]) -> dict[str, Any]:
    """`auto` for the CAM background score and the IR thresholds over `names`: calibrated on the
    masks of the labelled images (`masked`, those of `names` with a mask) when only some have
    one, else Otsu on score^SCORE_POWER over every CAM."""
    labelled = calibration_names(masked, names)
    if not labelled:
        return auto_background_score(cam_file(name) for name in names)

    def sample(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        arrays = load_npz(cam_file(name))
        return (layout.read_checked_mask(name), np.asarray(arrays["high_res"], np.float32),
                np.asarray(arrays["keys"], np.int64).reshape(-1))

    return calibrated_background_score(map(sample, labelled), layout.num_classes + 1)
