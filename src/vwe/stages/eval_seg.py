"""`vwe eval-seg`: per-class IoU / precision / recall of the DeepLab predictions
(docs/segmentation.md#metrics).

Scores every prediction folder `infer-seg` wrote for the split (`raw/` without CRF, `crf/` with
it): one confusion matrix per variant over all pixels of all images, GT 255 ignored, mIoU over
the classes present in the GT. Same table and JSON layout as eval-cam (`<run_dir>/eval_seg.json`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from vwe.config import Config
from vwe.data.io import ensure_writable_dir, read_label_map, write_json_atomic
from vwe.data.voc import VocLayout, open_dataset
from vwe.diagnostics import (
    all_background_miou,
    below_baseline,
    dominant_class,
    input_independent,
)
from vwe.engine.progress import progress
from vwe.engine.run_dir import RunDir
from vwe.errors import VweError
from vwe.metrics import (
    confusion_matrix,
    format_table,
    no_ground_truth,
    percent,
    scored_subset_line,
    scores_to_json,
    segmentation_scores,
)
from vwe.stage_records import require_input

log = logging.getLogger(__name__)

VARIANTS = ("raw", "crf")
SHOW_NAMES = 5


def found_variants(pred_dir: Path, names: list[str]) -> list[str]:
    """The variants present (raw, crf); each must hold a PNG for every image of the split."""
    variants = [v for v in VARIANTS if (pred_dir / v).is_dir()]
    if not variants:
        raise VweError(f"no predictions in {pred_dir} (expected raw/ or crf/ folders of PNGs); "
                       "run `vwe infer-seg` for this split first, or set eval_seg.pred_dir")
    for variant in variants:
        missing = [n for n in names
                   if not RunDir.prediction_file(pred_dir, variant, n).is_file()]
        if missing:
            raise VweError(f"{len(missing)} of {len(names)} predictions missing in "
                           f"{pred_dir / variant} (e.g. {', '.join(missing[:SHOW_NAMES])}); "
                           "rerun `vwe infer-seg` for this split (it resumes)")
    return variants


def accumulate(layout: VocLayout, names: list[str], pred_dir: Path, variants: list[str]
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each variant's (n, n) confusion matrix summed over the split, and each image's share of
    pixels per predicted class (images, n)."""
    num_classes = layout.num_classes + 1
    totals = {v: np.zeros((num_classes, num_classes), np.int64) for v in variants}
    shares: dict[str, list[np.ndarray]] = {v: [] for v in variants}
    for name in progress(names, desc="eval-seg"):
        gt = layout.read_checked_mask(name)
        for variant in variants:
            pred = read_label_map(RunDir.prediction_file(pred_dir, variant, name), gt.shape,
                                  num_classes,
                                  "prediction", "predict at full image size (rerun `vwe "
                                  "infer-seg --overwrite`)")
            totals[variant] += confusion_matrix(gt, pred, num_classes)
            shares[variant].append(np.bincount(pred.ravel(), minlength=num_classes)
                                   [:num_classes] / pred.size)
    return totals, {variant: np.stack(rows) for variant, rows in shares.items()}


def _entry(conf: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    scores = scores_to_json(segmentation_scores(conf, class_names))
    scores.pop("class_names")
    return {**scores, "confusion": conf.tolist()}


def run(cfg: Config) -> dict[str, Any]:
    """Score raw/ and crf/ predictions of `eval_seg.split`; write <run_dir>/eval_seg.json."""
    split = cfg.eval_seg.split
    layout = open_dataset(cfg.data)
    all_names = layout.read_split(split)
    names = layout.masked_names(all_names)  # a split with masks for some images: those
    if not names:
        summary = no_ground_truth("eval-seg", split, layout.masks_where())
        log.info("%s", summary["table"])
        return summary
    run_dir = RunDir(cfg)
    pred_dir = run_dir.eval_seg_predictions
    if not cfg.eval_seg.pred_dir:  # the run's own predictions: they must be this config's
        require_input(cfg, "infer_seg", pred_dir)
    variants = found_variants(pred_dir, names)
    ensure_writable_dir(cfg.run_dir, "run_dir")
    class_names = ["background", *layout.class_names]
    totals, shares = accumulate(layout, names, pred_dir, variants)
    report = {"split": split, "num_images": len(names), "class_names": class_names,
              "pred_dir": str(pred_dir),
              "variants": {v: _entry(totals[v], class_names) for v in variants}}
    report["warnings"] = _warnings(totals, shares, class_names)
    partial = scored_subset_line("eval-seg", split, names, all_names)
    report["warnings"] += [partial] if partial else []
    for warning in report["warnings"]:
        log.warning("%s", warning)
    json_path = run_dir.eval_json("eval_seg")
    write_json_atomic(json_path, report)
    # crf when present: the reported number (docs/segmentation.md#pseudo-label-training problem 2)
    primary = variants[-1]
    title = f"DeepLab ({primary}) on {split}, {len(names)} images"
    lines = [format_table(segmentation_scores(totals[primary], class_names), title), ""]
    lines += [f"{v:<4} mIoU {percent(report['variants'][v]['miou'])}" for v in variants]
    table = "\n".join(lines)
    mious = {v: report["variants"][v]["miou"] for v in variants}
    log.info("eval-seg: %s; written %s",
             ", ".join(f"{v} mIoU {percent(m)}" for v, m in mious.items()), json_path)
    return {"json": str(json_path), "split": split, "num_images": len(names),
            "miou": mious[primary], "variants": mious, "table": table,
            "warnings": report["warnings"]}


def _warnings(totals: dict[str, np.ndarray], shares: dict[str, np.ndarray],
              class_names: list[str]) -> list[str]:
    """Degenerate predictions: one class everywhere, the same for every image, no better than
    all background (docs/pipeline.md#degenerate-results)."""
    found = []
    for variant, conf in totals.items():
        what = f"eval-seg ({variant})"
        found += [dominant_class(conf, class_names, what),
                  input_independent(shares[variant], what),
                  below_baseline(segmentation_scores(conf, class_names)["miou"],
                                 {"all background": all_background_miou(conf)}, what)]
    return [warning for warning in found if warning]
