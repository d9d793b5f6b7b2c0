"""Experiments made of runs: `vwe ablate`'s rows and `vwe sweep`'s values, each a run directory
per seed under one parent, so a finished run is skipped when the experiment is run again
(docs/method.md#ablations).

A variant is a named list of `key=value` overrides applied to the experiment's config; each
(variant, seed) runs the CAM stages (or through the pseudo labels) with `vwe run`'s machinery
and is scored from the eval JSON files the stages write.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vwe.config import Config, DataConfig, to_yaml, with_overrides
from vwe.data.io import read_json, write_text_atomic
from vwe.engine.run_dir import RunDir
from vwe.errors import VweError
from vwe.pipeline import CAM_STAGES, REFINE_STAGES, SEG_STAGES, run_stages

log = logging.getLogger(__name__)

THROUGH = {"eval-cam": ("pretrain", *CAM_STAGES),
           "eval-labels": ("pretrain", *CAM_STAGES, *REFINE_STAGES),
           "eval-seg": ("pretrain", *CAM_STAGES, *REFINE_STAGES, *SEG_STAGES)}


@dataclass(frozen=True)
class Variant:
    """One row of an experiment: a folder name, a label for tables, its overrides, and the
    variant whose trained CAM network it shares (same training settings, other inference)."""

    slug: str
    label: str
    overrides: list[str]
    shares_training_of: str = ""
    paper: float | None = None  # the paper's VOC number for this row, when it has one


@dataclass
class VariantResult:
    """A variant's scores per seed and their mean and standard deviation."""

    variant: Variant
    runs: list[dict[str, Any]] = field(default_factory=list)

    def stats(self, key: str) -> dict[str, float | None]:
        values = [run[key] for run in self.runs if run.get(key) is not None]
        if not values:
            return {"mean": None, "sd": None, "n": 0}
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        return {"mean": float(np.mean(values)), "sd": sd, "n": len(values)}

    def to_json(self, keys: Sequence[str]) -> dict[str, Any]:
        return {"slug": self.variant.slug, "label": self.variant.label,
                "overrides": self.variant.overrides, "paper": self.variant.paper,
                "runs": self.runs, **{key: self.stats(key) for key in keys}}


def experiment_dir(cfg: Config, kind: str, through: str) -> Path:
    """`<run_dir>/<kind>` (CAM stages only) or `<run_dir>/<kind>-labels` (through pseudo labels):
    the two make CAMs of different splits, so they never share a folder."""
    suffix = "" if through == "eval-cam" else "-labels"
    return Path(cfg.run_dir) / f"{kind}{suffix}"


def run_variants(cfg: Config, variants: Sequence[Variant], seeds: int, through: str,
                 parent: Path, command: str) -> list[VariantResult]:
    """Every (variant, seed) run, seed by seed so a shared training exists before its users."""
    if through not in THROUGH:
        raise VweError(f"--through {through}: choose one of {', '.join(THROUGH)}")
    for variant in variants:  # every row's config checked before the first one trains
        variant_config(cfg, variant, 1, through, parent)
    ensure_generated_dataset(cfg)
    results = {v.slug: VariantResult(v) for v in variants}
    for seed in range(1, seeds + 1):
        for variant in variants:
            run = run_variant(cfg, variant, seed, through, parent, command)
            results[variant.slug].runs.append(run)
    return [results[v.slug] for v in variants]


def ensure_generated_dataset(cfg: Config) -> None:
    """The generated dataset, made when data.root is the generator's default folder and absent,
    so `vwe ablate --config configs/demo.yaml` on a fresh clone works as `vwe demo` does. An
    existing folder is never regenerated here (its synthetic settings may differ from this
    config's defaults), and any other root is left to the user."""
    root = Path(cfg.data.root)
    if not root.exists() and root == Path(DataConfig().root):
        from vwe.stages import make_dataset

        make_dataset.run(cfg)


def variant_config(cfg: Config, variant: Variant, seed: int, through: str,
                   parent: Path) -> Config:
    run_dir = parent / variant.slug / f"seed{seed}"
    extra = [f"seed={seed}", f"run_dir={run_dir}", "eval_cam.sweep=true"]
    if through == "eval-cam":  # CAMs of the scored images only
        extra.append(f"cam.split={cfg.eval_cam.split}")
    return with_overrides(cfg, [*variant.overrides, *extra], f"{variant.label}")


def run_variant(cfg: Config, variant: Variant, seed: int, through: str, parent: Path,
                command: str) -> dict[str, Any]:
    """One run of one variant (skipped stage by stage when done), and its scores."""
    row_cfg = variant_config(cfg, variant, seed, through, parent)
    run_dir = RunDir(row_cfg)
    if variant.shares_training_of:
        share_training(parent / variant.shares_training_of / f"seed{seed}", run_dir.root)
    run_dir.config_file(command).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir.config_file(command), to_yaml(row_cfg))
    log.info("%s: %s, seed %d → %s", command, variant.label, seed, run_dir.root)
    run_stages(row_cfg, THROUGH[through])
    return {"seed": seed, "run_dir": str(run_dir.root), **run_scores(run_dir)}


def share_training(source: Path, target: Path) -> None:
    """Give `target` the trained CAM network of `source` (hard links where the file system
    allows), with its done-marker, so `run_stages` skips a training it would repeat exactly."""
    trained = source / "train_cam"
    marker = source / "done" / "train_cam.json"
    if not marker.is_file() or (target / "done" / "train_cam.json").is_file():
        return
    (target / "done").mkdir(parents=True, exist_ok=True)
    for path in sorted(trained.rglob("*")):
        if path.is_file() and "tensorboard" not in path.parts:
            _link_or_copy(path, target / "train_cam" / path.relative_to(trained))
    _link_or_copy(marker, target / "done" / "train_cam.json")


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def run_scores(run_dir: RunDir) -> dict[str, Any]:
    """mIoU (%) of a run's fused CAM at the configured background score and at the sweep's best
    threshold, and the pseudo labels' and the segmentation's (without and with CRF) when they
    were made."""
    scores: dict[str, Any] = {}
    cam_json = run_dir.eval_json("eval_cam")
    if cam_json.is_file():
        cam_report = read_json(cam_json)
        fused = cam_report["variants"]["fused"]
        scores.update(_part_scores("cam", cam_report.get("parts")))
        scores["cam_at_bkg"] = _percent(fused["at_bkg_score"]["miou"])
        if fused.get("sweep"):
            scores["cam_best"] = _percent(fused["sweep"]["best"]["miou"])
            scores["cam_best_threshold"] = fused["sweep"]["best_threshold"]
    labels_json = run_dir.eval_json("eval_labels")
    if labels_json.is_file():
        report = read_json(labels_json)
        scores["labels"] = _percent(report["scores"]["miou"])
        scores.update(_part_scores("labels", report.get("parts")))
        if report.get("sweep"):
            scores["labels_best"] = _percent(report["sweep"]["best"]["miou"])
    seg_json = run_dir.eval_json("eval_seg")
    if seg_json.is_file():
        variants = read_json(seg_json)["variants"]
        scores["seg"] = _percent(variants["raw"]["miou"])
        if "crf" in variants:
            scores["seg_crf"] = _percent(variants["crf"]["miou"])
    return scores


def _part_scores(prefix: str, parts: dict[str, Any] | None) -> dict[str, float | None]:
    """Mean recall (%) on mark and on body pixels, when the data has part maps."""
    if not parts:
        return {}
    return {f"{prefix}_mark": _percent(parts.get("mean_mark_recall")),
            f"{prefix}_body": _percent(parts.get("mean_body_recall"))}


def _percent(value: Any) -> float | None:
    if not isinstance(value, int | float) or math.isnan(value):
        return None
    return round(100.0 * float(value), 3)


def mean_sd(stats: dict[str, float | None]) -> str:
    """'56.7 ± 2.1' (one decimal), '-' when nothing was scored."""
    if stats.get("mean") is None:
        return "-"
    return f"{stats['mean']:.1f} ± {stats['sd']:.1f}"


def seeds_text(seeds: int) -> str:
    """'1 seed', '3 seeds (mean ± sd)'."""
    return "1 seed" if seeds == 1 else f"{seeds} seeds (mean ± sd)"
