"""Segmentation scores: confusion matrix, IoU / precision / recall, the per-class table.

One confusion matrix over all pixels of a split (rows = ground truth, columns = prediction;
ground-truth values outside [0, n), i.e. 255, are ignored). mIoU is the mean IoU over the classes
present in the ground truth, as the authors' `scores` computes it (docs/method.md#interfaces;
docs/method.md#cam-evaluation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from vwe.errors import VweError


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(n, n) int64 pixel counts, rows GT and columns prediction; GT ∉ [0, n) ignored."""
    if gt.shape != pred.shape:
        raise ValueError(f"gt shape {gt.shape} != prediction shape {pred.shape}")
    gt = gt.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).astype(np.int64)
    valid = (gt >= 0) & (gt < num_classes)
    if np.any((pred[valid] < 0) | (pred[valid] >= num_classes)):
        raise ValueError(f"prediction holds labels outside [0, {num_classes})")
    pairs = gt[valid] * num_classes + pred[valid]
    counts = np.bincount(pairs, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def cam_to_label(cams: np.ndarray, keys: np.ndarray, bkg_score: float) -> np.ndarray:
    """Label map from CAMs: argmax over [bkg plane; cams] mapped through [0] + (keys + 1).

    The background plane comes first, so ties go to the background (docs/method.md#cam-evaluation).
    cams: (K, H, W) scores of the K labelled classes; keys: (K,) 0-based foreground indices.
    """
    background = np.full((1, *cams.shape[1:]), bkg_score, dtype=cams.dtype)
    channel = np.concatenate([background, cams], axis=0).argmax(axis=0)
    labels = np.concatenate([[0], np.asarray(keys, dtype=np.int64) + 1])
    return labels[channel]


def sweep_confusions(gt: np.ndarray, cams: np.ndarray, keys: np.ndarray,
                     thresholds: Sequence[float], num_classes: int) -> np.ndarray:
    """(T, n, n) confusion matrices of one image, one per background threshold, in one pass.

    Equals `confusion_matrix(gt, cam_to_label(cams, keys, t), n)` for every t: a pixel is
    background when its best foreground score is <= t (ties to the background), else the class
    of its best foreground channel. Each pixel is binned once by how many thresholds lie below
    its score; cumulative sums then give every threshold's matrix.
    """
    if cams.shape[0] != len(keys) or cams.shape[1:] != gt.shape:
        raise ValueError(f"cams {cams.shape}, keys {len(keys)} and gt {gt.shape} disagree")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    order = np.argsort(thresholds, kind="stable")
    # Compare in the CAM dtype, like the argmax over a plane filled with the threshold does.
    ordered = thresholds[order].astype(cams.dtype if cams.size else np.float32)
    gt_flat = gt.reshape(-1).astype(np.int64)
    valid = (gt_flat >= 0) & (gt_flat < num_classes)
    gt_valid = gt_flat[valid]
    n_pairs = num_classes * num_classes
    n_thr = len(ordered)
    background_pairs = gt_valid * num_classes  # (gt, 0)
    if cams.shape[0] == 0 or gt_valid.size == 0:
        per_thr = np.bincount(background_pairs, minlength=n_pairs)
        return np.broadcast_to(per_thr, (n_thr, n_pairs)).reshape(
            n_thr, num_classes, num_classes).astype(np.int64)
    flat_cams = cams.reshape(cams.shape[0], -1)[:, valid]
    best_score = flat_cams.max(axis=0)  # (P,)
    best_class = np.asarray(keys, dtype=np.int64)[flat_cams.argmax(axis=0)] + 1
    # Thresholds 0..below-1 are < score: the pixel is foreground there, background from `below` on.
    below = np.searchsorted(ordered, best_score, side="left")
    fg_hist = np.bincount(below * n_pairs + gt_valid * num_classes + best_class,
                          minlength=(n_thr + 1) * n_pairs).reshape(n_thr + 1, n_pairs)
    bg_hist = np.bincount(below * n_pairs + background_pairs,
                          minlength=(n_thr + 1) * n_pairs).reshape(n_thr + 1, n_pairs)
    fg_at = np.cumsum(fg_hist[::-1], axis=0)[::-1][1:]  # threshold i: pixels with below > i
    bg_at = np.cumsum(bg_hist, axis=0)[:-1]  # threshold i: pixels with below <= i
    sweep = np.empty((n_thr, n_pairs), dtype=np.int64)
    sweep[order] = fg_at + bg_at
    return sweep.reshape(n_thr, num_classes, num_classes)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def segmentation_scores(conf: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class IoU / precision / recall, mIoU over classes present in GT, pixel accuracy.

    A class's IoU is NaN when it is in neither GT nor prediction; precision is NaN without
    predicted pixels, recall without GT pixels. Means skip classes absent from the GT.
    """
    conf = np.asarray(conf, dtype=np.int64)
    if conf.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion {conf.shape} does not match {len(class_names)} class names")
    true_pos = np.diag(conf).astype(np.float64)
    gt_pixels = conf.sum(axis=1)
    pred_pixels = conf.sum(axis=0)
    iou = _safe_ratio(true_pos, gt_pixels + pred_pixels - true_pos)
    precision = _safe_ratio(true_pos, pred_pixels)
    recall = _safe_ratio(true_pos, gt_pixels)
    present = gt_pixels > 0
    total = conf.sum()
    return {
        "class_names": list(class_names),
        "iou": iou,
        "precision": precision,
        "recall": recall,
        "gt_pixels": gt_pixels,
        "pred_pixels": pred_pixels,
        "present": present,
        "miou": float(np.nanmean(iou[present])) if present.any() else math.nan,
        "mean_precision": _nanmean(precision[present]),
        "mean_recall": _nanmean(recall[present]),
        "pixel_accuracy": float(true_pos.sum() / total) if total > 0 else math.nan,
        "num_pixels": int(total),
    }


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def no_ground_truth(stage: str, split: str, where: str,
                    configured: dict[str, float] | None = None) -> dict[str, Any]:
    """The summary of an eval stage whose split has no masks: nothing scored, the run goes on.

    `configured`: the thresholds later stages use as configured, since no sweep can choose them
    (named in the line and kept in the summary)."""
    line = f"{stage}: split '{split}' has no masks ({where}); nothing to score"
    if configured:
        used = ", ".join(f"{key}={format_value(value)}" for key, value in configured.items())
        line += f"; no sweep can pick thresholds, so the configured ones are used ({used})"
    return {"skipped": "no masks", "split": split, "miou": None, "table": line,
            "configured": dict(configured or {})}


def scored_subset_line(stage: str, split: str, masked: Sequence[str], names: Sequence[str],
                       calibrated: bool = False) -> str:
    """The warning of an eval stage whose split has masks for only some images: they alone are
    scored, and where `auto` calibrated on them the score is optimistic. Empty when all have."""
    if len(masked) == len(names):
        return ""
    have = set(masked)
    first = next(name for name in names if name not in have)
    line = (f"{stage}: {len(masked)} of {len(names)} images of '{split}' have masks (none for "
            f"'{first}'); scored on those only")
    if calibrated:
        line += " (auto chose its threshold on the same images: an optimistic score)"
    return line


def format_value(value: Any) -> str:
    """A threshold as the config holds it: a number (`:g`) or a word such as auto."""
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def percent(value: float | None) -> str:
    """A score in [0, 1] as papers print it (one decimal, in %); "-" when there is none."""
    if not isinstance(value, int | float) or math.isnan(value):
        return "-"
    return f"{100.0 * value:.1f}"


def threshold_grid(start: float, stop: float, step: float, section: str) -> np.ndarray:
    """start, start + step, …, up to stop inclusive (rounded to 1e-6), for a background sweep;
    `section` names the config keys in the error (scores are normalised to [0, 1])."""
    if not (step > 0 and 0 <= start <= stop <= 1):
        raise VweError(f"{section} sweep needs 0 <= sweep_start <= sweep_stop <= 1 and "
                       f"sweep_step > 0 (got start={start}, stop={stop}, step={step}); the "
                       "scores are scaled to [0, 1]")
    count = int(np.floor((stop - start) / step + 1e-6)) + 1
    return np.round(start + step * np.arange(count), 6)


def format_table(scores: dict[str, Any], title: str = "") -> str:
    """The per-class table for the terminal, in percent with one decimal as papers print it."""
    names = scores["class_names"]
    width = max([len("pixel accuracy"), *(len(name) for name in names)])
    header = f"{'class':<{width}}  {'IoU':>6}  {'prec.':>6}  {'recall':>6}"
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for index, name in enumerate(names):
        mark = "" if scores["present"][index] else "  (not in GT)"
        lines.append(f"{name:<{width}}  {percent(scores['iou'][index]):>6}  "
                     f"{percent(scores['precision'][index]):>6}  "
                     f"{percent(scores['recall'][index]):>6}{mark}")
    lines.append("-" * len(header))
    lines.append(f"{'mIoU':<{width}}  {percent(scores['miou']):>6}  "
                 f"{percent(scores['mean_precision']):>6}  {percent(scores['mean_recall']):>6}")
    lines.append(f"{'pixel accuracy':<{width}}  {percent(scores['pixel_accuracy']):>6}")
    return "\n".join(lines)


def json_ready(value: Any) -> Any:
    """Arrays and numpy scalars as plain lists and numbers, NaN/inf as None (JSON null)."""
    if isinstance(value, np.ndarray):
        return [json_ready(item) for item in value.tolist()]
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def scores_to_json(scores: dict[str, Any]) -> dict[str, Any]:
    """Scores with plain Python numbers and lists (NaN → null), ready for `json.dump`."""
    return {key: json_ready(value) for key, value in scores.items()}


def scores_entry(conf: np.ndarray, class_names: list[str], **extra: Any) -> dict[str, Any]:
    """JSON-ready scores of one confusion matrix (class names are listed once, elsewhere)."""
    scores = scores_to_json(segmentation_scores(conf, class_names))
    scores.pop("class_names")
    return {**extra, **scores, "confusion": conf.tolist()}


def sweep_report(sweep: np.ndarray, thresholds: np.ndarray,
                 class_names: list[str]) -> dict[str, Any]:
    """The mIoU curve over background thresholds (T, n, n confusions) and the best point
    (the lowest threshold on ties), as eval-cam and eval-labels report it."""
    curve = [segmentation_scores(conf, class_names) for conf in sweep]
    mious = np.array([scores["miou"] for scores in curve])
    best = int(np.nanargmax(mious)) if np.isfinite(mious).any() else 0
    return {"thresholds": json_ready(thresholds), "miou": json_ready(mious),
            "pixel_accuracy": json_ready(np.array([s["pixel_accuracy"] for s in curve])),
            "best_threshold": float(thresholds[best]),
            "best": scores_entry(sweep[best], class_names, threshold=float(thresholds[best]))}


# Values of the generator's part map (docs/synthetic.md#part-masks): which part a pixel shows.
PART_VALUES = {"mark": 2, "body": 1}


def part_counts(gt: np.ndarray, pred: np.ndarray, parts: np.ndarray,
                num_classes: int) -> np.ndarray:
    """(2, 2, n) int64: for [mark, body] pixels, [correctly predicted, all] per ground-truth
    class, counted over foreground pixels whose part is known."""
    counts = np.zeros((len(PART_VALUES), 2, num_classes), dtype=np.int64)
    fg = (gt > 0) & (gt < num_classes)
    for kind, value in enumerate(PART_VALUES.values()):
        chosen = fg & (parts == value)
        truth, guess = gt[chosen].astype(np.int64), pred[chosen].astype(np.int64)
        counts[kind, 0] = np.bincount(truth[guess == truth], minlength=num_classes)
        counts[kind, 1] = np.bincount(truth, minlength=num_classes)
    return counts


def part_recall_report(counts: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class recall on mark pixels and on body pixels, and their means over the classes
    that have such pixels: does the prediction spread from the mark to the body?"""
    report: dict[str, Any] = {"class_names": list(class_names)}
    for kind, name in enumerate(PART_VALUES):
        recall = _safe_ratio(counts[kind, 0][1:].astype(np.float64),
                             counts[kind, 1][1:].astype(np.float64))
        report[f"{name}_recall"] = json_ready(np.concatenate([[np.nan], recall]))
        report[f"{name}_pixels"] = counts[kind, 1].tolist()
        report[f"mean_{name}_recall"] = json_ready(_nanmean(recall))
    return report


def part_line(what: str, report: dict[str, Any], threshold: Any) -> str:
    """One line: mean recall on mark pixels and on body pixels."""
    mark, body = percent(report["mean_mark_recall"]), percent(report["mean_body_recall"])
    return (f"part recall of the {what} at {format_value(threshold)}: mark {mark}, body {body} "
            "(docs/synthetic.md#part-masks)")
