"""`vwe eval-cam`: CAM mIoU per class, at the background score and over a threshold sweep.

For every image of `eval_cam.split`, the prediction is the argmax over [bkg plane; high_res]
mapped through [0] + (keys + 1), ties to the background; one confusion matrix over all pixels,
255 ignored; mIoU over the classes present in the ground truth (docs/method.md#cam-evaluation,
docs/method.md#interfaces). Every CAM variant the files hold is scored: "fused" is the
`high_res` array (M_img alone when `cam.fuse_word_cam` is off), "img" and "word" its parts.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from vwe.config import Config
from vwe.data.io import check_finite, load_npz, write_json_atomic
from vwe.data.voc import VocLayout, open_dataset
from vwe.diagnostics import (
    all_background_miou,
    at_sweep_edge,
    below_baseline,
    dominant_class,
    painted_tags,
)
from vwe.engine.progress import progress
from vwe.engine.run_dir import RunDir
from vwe.errors import VweError
from vwe.inference.thresholds import choose_background_score, is_auto
from vwe.metrics import (
    cam_to_label,
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
from vwe.stage_records import require_input

log = logging.getLogger(__name__)

# Variant name → array in the CAM file (written by `vwe make-cam`).
VARIANTS = {"fused": "high_res", "img": "high_res_img", "word": "high_res_word"}


def _cam_paths(run_dir: RunDir, names: list[str]) -> list[Path]:
    """The CAM file of every listed image; VweError naming the first missing one."""
    paths = [run_dir.cam_file(name) for name in names]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise VweError(f"CAM file {missing[0]} not found ({len(missing)} of {len(paths)} missing); "
                       "run `vwe make-cam` with the same config first (it resumes)")
    return paths


def _variants_in(arrays: dict[str, np.ndarray], path: Path) -> list[str]:
    """Which variants a CAM file holds; `high_res` (the fused CAM) must be there."""
    if "keys" not in arrays or "high_res" not in arrays:
        raise VweError(f"CAM file {path} lacks 'keys' or 'high_res' (has {sorted(arrays)}); "
                       "delete it and rerun `vwe make-cam`")
    return [name for name, key in VARIANTS.items() if key in arrays]


def _checked_cams(arrays: dict[str, np.ndarray], variants: list[str], path: Path,
                  mask_path: Path, mask_shape: tuple[int, ...], num_classes: int
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """keys (K,) and each variant's (K, H, W) CAMs, checked against the mask and class count."""
    keys = np.asarray(arrays["keys"]).reshape(-1)
    if keys.size and (not np.issubdtype(keys.dtype, np.integer)
                      or keys.min() < 0 or keys.max() >= num_classes - 1):
        raise VweError(f"CAM file {path} has keys {keys.tolist()} outside the {num_classes - 1} "
                       "foreground classes of the dataset; make the CAMs with this dataset")
    cams = {}
    for variant in variants:
        key = VARIANTS[variant]
        if key not in arrays:
            raise VweError(f"CAM file {path} lacks '{key}' that other CAM files hold; the CAM "
                           "folder mixes runs: delete it and rerun `vwe make-cam`")
        cam = check_finite(arrays[key], path, "CAM file",
                           "delete that file and rerun `vwe make-cam`")
        if cam.ndim != 3 or cam.shape[0] != keys.size:
            raise VweError(f"CAM file {path}: '{key}' has shape {cam.shape}, expected "
                           f"({keys.size}, H, W) for {keys.size} keys; rerun `vwe make-cam`")
        if cam.shape[1:] != mask_shape:
            raise VweError(f"CAM file {path}: '{key}' is {cam.shape[1]}x{cam.shape[2]} but "
                           f"the mask {mask_path} and its image are "
                           f"{mask_shape[0]}x{mask_shape[1]}; the file was made from another "
                           "image: delete that file and rerun `vwe make-cam`")
        cams[variant] = cam.astype(np.float32)  # float16 files too
    return keys.astype(np.int64), cams


def _accumulate(cfg: Config, layout: VocLayout, names: list[str], thresholds: np.ndarray
                ) -> tuple[list[str], dict[str, np.ndarray], np.ndarray | None, np.ndarray]:
    """Sum each variant's (T, n, n) confusion matrices over the split, one image at a time, the
    fused CAM's part counts at the background score where part maps exist, and the confusion
    of painting each image with its first tag (a baseline, docs/pipeline.md#degenerate-results)."""
    num_classes = layout.num_classes + 1  # background first
    run_dir = RunDir(cfg)
    require_input(cfg, "make_cam", run_dir.cams)
    paths = _cam_paths(run_dir, names)
    variants: list[str] = []
    totals: dict[str, np.ndarray] = {}
    part_totals: np.ndarray | None = None
    painted = np.zeros((num_classes, num_classes), np.int64)
    labels = layout.labels_for(names)
    for name, path in progress(zip(names, paths), total=len(names), desc="eval-cam"):
        arrays = load_npz(path)
        if not variants:
            variants = _variants_in(arrays, path)
            totals = {v: np.zeros((len(thresholds), num_classes, num_classes), np.int64)
                      for v in variants}
        gt = layout.read_checked_mask(name)
        keys, cams = _checked_cams(arrays, variants, path, layout.mask_path(name), gt.shape,
                                   num_classes)
        for variant, cam in cams.items():
            totals[variant] += sweep_confusions(gt, cam, keys, thresholds, num_classes)
        painted += confusion_matrix(gt, painted_tags(gt, labels[name]), num_classes)
        parts = layout.read_parts(name)
        if parts is not None and parts.shape == gt.shape:
            pred = cam_to_label(cams["fused"], keys, float(thresholds[0]))
            counted = part_counts(gt, pred, parts, num_classes)
            part_totals = counted if part_totals is None else part_totals + counted
    return variants, totals, part_totals, painted


def _warnings(report: dict[str, Any], fused: np.ndarray, painted: np.ndarray,
              thresholds: np.ndarray) -> list[str]:
    """Degenerate fused CAMs: one class everywhere, a best threshold at the sweep's edge, a
    score no better than all-background or the painted tags."""
    names = report["class_names"]
    fused_report = report["variants"]["fused"]
    best = fused_report["at_bkg_score"]["miou"]
    found = [dominant_class(fused[0], names, "eval-cam (fused CAM at the background score)")]
    if fused_report["sweep"] is not None:
        best = max(best, fused_report["sweep"]["best"]["miou"])
        found.append(at_sweep_edge(fused_report["sweep"]["best_threshold"], thresholds[1:],
                                   "eval-cam", "eval_cam.sweep"))
    report["baselines"] = {"all background": all_background_miou(fused[0]),
                           "tags painted": segmentation_scores(painted, names)["miou"]}
    found.append(below_baseline(best, report["baselines"], "eval-cam (best fused CAM)"))
    return [warning for warning in found if warning]


def _variant_report(confusions: np.ndarray, thresholds: np.ndarray, class_names: list[str],
                    with_sweep: bool) -> dict[str, Any]:
    """Scores at the configured background score (index 0) and, if swept, the whole curve."""
    return {"at_bkg_score": scores_entry(confusions[0], class_names,
                                         threshold=float(thresholds[0])),
            "sweep": sweep_report(confusions[1:], thresholds[1:], class_names)
            if with_sweep else None}


def _summary_table(report: dict[str, Any], fused: np.ndarray, bkg_score: float) -> str:
    """The fused CAM's per-class table at the background score, then one line per variant."""
    title = (f"CAM (fused) on {report['split']}, {report['num_images']} images, "
             f"bkg score {bkg_score:g}")
    lines = [format_table(segmentation_scores(fused, report["class_names"]), title), ""]
    for variant, result in report["variants"].items():
        line = f"{variant:<6} mIoU {percent(result['at_bkg_score']['miou'])} at bkg {bkg_score:g}"
        if result["sweep"] is not None:
            line += (f"; sweep best {percent(result['sweep']['best']['miou'])} at bkg "
                     f"{result['sweep']['best_threshold']:g}")
        lines.append(line)
    return "\n".join(lines)


def run(cfg: Config) -> dict[str, Any]:
    """Score the CAM files of `eval_cam.split`; write <run_dir>/eval_cam.json; return a summary."""
    eval_cfg = cfg.eval_cam
    layout = open_dataset(cfg.data)
    names = layout.read_split(eval_cfg.split)
    masked = layout.masked_names(names)  # a split with masks for some images: those scored
    auto = None
    if is_auto(eval_cfg.bkg_score):  # from the CAMs alone, or a handful of labelled images
        run_dir = RunDir(cfg)
        require_input(cfg, "make_cam", run_dir.cams)
        _cam_paths(run_dir, names)  # every CAM file there, else one line
        auto = choose_background_score(layout, run_dir.cam_file, names, masked)
        eval_cfg = dataclasses.replace(eval_cfg, bkg_score=auto["bkg_score"])
        log.info("eval-cam: auto background score %g (%s)", auto["bkg_score"], auto["rule"])
    if not masked:
        summary = no_ground_truth("eval-cam", eval_cfg.split, layout.masks_where(), {
            "eval_cam.bkg_score": eval_cfg.bkg_score, "ir_labels.fg_thres": cfg.ir_labels.fg_thres,
            "ir_labels.bg_thres": cfg.ir_labels.bg_thres})
        if auto is not None:
            summary["auto"] = {k: v for k, v in auto.items() if k != "histogram"}
        log.info("%s", summary["table"])
        return summary
    sweep = threshold_grid(eval_cfg.sweep_start, eval_cfg.sweep_stop, eval_cfg.sweep_step,
                           "eval_cam") if eval_cfg.sweep else np.zeros(0)
    thresholds = np.concatenate([[eval_cfg.bkg_score], sweep])
    class_names = ["background", *layout.class_names]
    partial = scored_subset_line("eval-cam", eval_cfg.split, masked, names,
                                 auto is not None and auto["calibrated"])
    variants, totals, part_totals, painted = _accumulate(cfg, layout, masked, thresholds)
    report: dict[str, Any] = {
        "split": eval_cfg.split, "num_images": len(masked), "class_names": class_names,
        "bkg_score": float(eval_cfg.bkg_score), "auto": auto,
        "variants": {v: _variant_report(totals[v], thresholds, class_names, eval_cfg.sweep)
                     for v in variants},
    }
    if part_totals is not None:  # the generated data: recall on marks and on bodies
        report["parts"] = part_recall_report(part_totals, class_names)
    report["warnings"] = _warnings(report, totals["fused"], painted, thresholds) \
        if "fused" in totals else []
    report["warnings"] += [partial] if partial else []
    for warning in report["warnings"]:
        log.warning("%s", warning)
    json_path = RunDir(cfg).eval_json("eval_cam")
    write_json_atomic(json_path, report)
    table = _summary_table(report, totals["fused"][0], eval_cfg.bkg_score)
    if "parts" in report:
        table += "\n" + part_line("fused CAM", report["parts"], eval_cfg.bkg_score)
    log.debug("%s", table)
    primary = report["variants"][variants[0]]
    summary = {"json": str(json_path), "split": eval_cfg.split, "num_images": len(masked),
               "miou": primary["at_bkg_score"]["miou"], "table": table,
               "warnings": report["warnings"], "bkg_score": float(eval_cfg.bkg_score),
               "variants": {v: _short(r) for v, r in report["variants"].items()}}
    log.info("eval-cam: %s mIoU %s at bkg %g; written %s", variants[0], percent(summary["miou"]),
             eval_cfg.bkg_score, json_path)
    return summary


def _short(result: dict[str, Any]) -> dict[str, Any]:
    """mIoU at the background score and the sweep's best, for the returned summary."""
    short = {"miou": result["at_bkg_score"]["miou"]}
    if result["sweep"] is not None:
        short["best_miou"] = result["sweep"]["best"]["miou"]
        short["best_threshold"] = result["sweep"]["best_threshold"]
    return short
