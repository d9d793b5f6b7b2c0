"""`vwe eval-labels`: mIoU, per-class IoU, precision and recall of a folder of label PNGs.

Scores `eval_labels.label_dir` (default the pseudo labels) against the ground truth of
`eval_labels.split` with the same confusion matrix, table and JSON fields as eval-cam; 255 in a
label counts as background, as IRNet's eval_sem_seg does (docs/refinement.md#evaluation). With
`eval_labels.sweep` and the walks of `vwe pseudo-labels` present for every image, the background
threshold of the walk (pseudo_labels.bg_thres) is swept on the stored walks, without walking again:
at each threshold the result equals scoring the PNGs pseudo-labels would write with it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from vwe.config import Config
from vwe.data.io import check_finite, load_npz, read_label_map, write_json_atomic
from vwe.data.voc import VocLayout, open_dataset
from vwe.diagnostics import all_background_miou, at_sweep_edge, below_baseline, dominant_class
from vwe.engine.progress import progress
from vwe.engine.run_dir import RunDir
from vwe.errors import VweError
from vwe.inference.thresholds import is_auto
from vwe.metrics import (
    confusion_matrix,
    format_table,
    no_ground_truth,
    part_counts,
    part_line,
    part_recall_report,
    percent,
    scored_subset_line,
    scores_entry,
    segmentation_scores,
    sweep_confusions,
    sweep_report,
    threshold_grid,
)
from vwe.refine.random_walk import walk_scores
from vwe.stage_records import require_input

log = logging.getLogger(__name__)


def read_walk(path: Path, gt_shape: tuple[int, ...], scale: str = "max"
              ) -> tuple[np.ndarray, np.ndarray]:
    """Stored walk → (keys, walk maps upsampled and scaled as pseudo-labels does for
    `pseudo_labels.scale`, (K, H, W))."""
    arrays = load_npz(path)
    wanted = ("rw", "keys", "plane") if scale == "plane" else ("rw", "keys")
    if any(key not in arrays for key in wanted):
        raise VweError(f"walk file {path} lacks one of {wanted}; delete the walks folder and "
                       "rerun `vwe pseudo-labels`")
    keys = np.asarray(arrays["keys"], np.int64).reshape(-1)
    rw = check_finite(arrays["rw"], path, "walk file", "delete that file and its pseudo label "
                      "and rerun `vwe pseudo-labels` (it makes only the missing ones)")
    want = (keys.size, (gt_shape[0] + 3) // 4, (gt_shape[1] + 3) // 4)
    if rw.shape != want:
        raise VweError(f"walk file {path} has shape {rw.shape}, expected {want} for its ground "
                       "truth; delete the walks folder and rerun `vwe pseudo-labels`")
    return keys, walk_scores(rw, arrays["plane"] if scale == "plane" else None, gt_shape[:2])


def accumulate(cfg: Config, layout: VocLayout, names: list[str], label_dir: Path,
               thresholds: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Confusion of the PNGs (n, n), given thresholds of the stored walks (T, n, n), and the
    labels' part counts where part maps exist."""
    num_classes = layout.num_classes + 1
    paths = [RunDir.label_file(label_dir, name) for name in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise VweError(f"label {missing[0]} not found ({len(missing)} of {len(paths)} missing); "
                       "run the stage that writes them (e.g. `vwe pseudo-labels`) or set "
                       "eval_labels.label_dir")
    run_dir = RunDir(cfg)
    conf = np.zeros((num_classes, num_classes), np.int64)
    sweep = None if thresholds is None else \
        np.zeros((len(thresholds), num_classes, num_classes), np.int64)
    part_totals: np.ndarray | None = None
    for name, path in progress(zip(names, paths), total=len(names), desc="eval-labels"):
        gt = layout.read_checked_mask(name)
        label = read_label_map(path, gt.shape, num_classes, "label", "the labels were made from "
                               "other images", ignore_as=0)
        conf += confusion_matrix(gt, label, num_classes)
        parts = layout.read_parts(name)
        if parts is not None and parts.shape == gt.shape:
            counted = part_counts(gt, label, parts, num_classes)
            part_totals = counted if part_totals is None else part_totals + counted
        if sweep is not None:
            keys, walk = read_walk(run_dir.walk_file(name), gt.shape, cfg.pseudo_labels.scale)
            sweep += sweep_confusions(gt, walk, keys, thresholds, num_classes)
    return conf, sweep, part_totals


def _warnings(report: dict[str, Any], conf: np.ndarray,
              thresholds: np.ndarray | None) -> list[str]:
    """Degenerate labels: one class everywhere, a best walk threshold at the sweep's edge, a
    score no better than all-background (docs/pipeline.md#degenerate-results)."""
    best = report["scores"]["miou"]
    found = [dominant_class(conf, report["class_names"], "eval-labels")]
    if report["sweep"] is not None and thresholds is not None:
        best = max(best, report["sweep"]["best"]["miou"])
        found.append(at_sweep_edge(report["sweep"]["best_threshold"], thresholds,
                                   "eval-labels", "eval_labels.sweep"))
    found.append(below_baseline(best, {"all background": all_background_miou(conf)},
                                "eval-labels"))
    return [warning for warning in found if warning]


def walks_present(cfg: Config, names: list[str]) -> bool:
    """Whether every listed image has a stored walk."""
    return all(RunDir(cfg).walk_file(name).is_file() for name in names)


def run(cfg: Config) -> dict[str, Any]:
    """Score the label folder; write <run_dir>/eval_labels.json; return a summary with a table."""
    ec = cfg.eval_labels
    layout = open_dataset(cfg.data)
    all_names = layout.read_split(ec.split)
    names = layout.masked_names(all_names)  # a split with masks for some images: those
    if not names:
        summary = no_ground_truth("eval-labels", ec.split, layout.masks_where(),
                                  {"pseudo_labels.bg_thres": cfg.pseudo_labels.bg_thres})
        log.info("%s", summary["table"])
        return summary
    run_dir = RunDir(cfg)
    label_dir = run_dir.eval_label_dir
    if not ec.label_dir:  # the run's own pseudo labels: they must be this config's
        require_input(cfg, "pseudo_labels", label_dir)
    thresholds = threshold_grid(ec.sweep_start, ec.sweep_stop, ec.sweep_step,
                                "eval_labels") if ec.sweep else None
    if thresholds is not None and not walks_present(cfg, names):
        log.info("eval-labels: no stored walks for every image of '%s' in %s/walks; sweep "
                 "skipped", ec.split, cfg.run_dir)
        thresholds = None
    class_names = ["background", *layout.class_names]
    conf, sweep, part_totals = accumulate(cfg, layout, names, label_dir, thresholds)
    report: dict[str, Any] = {
        "split": ec.split, "num_images": len(names), "class_names": class_names,
        "label_dir": str(label_dir), "scores": scores_entry(conf, class_names),
        "sweep": None if sweep is None else sweep_report(sweep, thresholds, class_names),
    }
    if part_totals is not None:  # the generated data: recall on marks and on bodies
        report["parts"] = part_recall_report(part_totals, class_names)
    report["warnings"] = _warnings(report, conf, thresholds)
    partial = scored_subset_line("eval-labels", ec.split, names, all_names,
                                 is_auto(cfg.pseudo_labels.bg_thres)
                                 and cfg.pseudo_labels.split == ec.split)
    report["warnings"] += [partial] if partial else []
    for warning in report["warnings"]:
        log.warning("%s", warning)
    json_path = run_dir.eval_json("eval_labels")
    write_json_atomic(json_path, report)
    title = f"Labels {label_dir} on {ec.split}, {len(names)} images"
    table = format_table(segmentation_scores(conf, class_names), title)
    summary = {"json": str(json_path), "split": ec.split, "num_images": len(names),
               "miou": report["scores"]["miou"], "warnings": report["warnings"]}
    if report["sweep"] is not None:
        best = report["sweep"]["best"]
        table += (f"\n\nwalk bg-threshold sweep: best mIoU {percent(best['miou'])} at "
                  f"{report['sweep']['best_threshold']:g}")
        summary.update(best_miou=best["miou"], best_threshold=report["sweep"]["best_threshold"])
    if "parts" in report:
        table += "\n" + part_line("labels", report["parts"], cfg.pseudo_labels.bg_thres)
    log.info("eval-labels: mIoU %s; written %s", percent(summary["miou"]), json_path)
    return {**summary, "table": table}
