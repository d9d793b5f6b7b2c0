"""`auto` thresholds against the masks' best (oracle) and the fixed defaults, per dataset.

For every dataset (generated variants whose best background score differs, and an MSRC run), the
pipeline runs through the pseudo labels with every threshold `auto`, then the IR labels twice
more (fixed defaults; the oracle CAM score + 0.15 / − 0.10) to measure what the IR
thresholds do to the pseudo labels. Printed per dataset and threshold: the oracle value and its
mIoU, the `auto` value and its mIoU, the fixed default and its mIoU
(docs/method.md#auto-thresholds).

    python benchmarks/thresholds.py --out benchmarks/out/thresholds \\
        [--variants default,small_parts,large_parts] [--msrc-run runs/msrc] [--train-aug 1000]

Generated variants use configs/demo.yaml at reduced size; the MSRC row reuses a finished
`vwe run --config configs/msrc.yaml` run directory (copied, so the run itself is not touched).
Runs resume: a second call skips every stage already done. Results: <out>/thresholds.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vwe.config import Config, load_config
from vwe.data.io import image_size, load_npz
from vwe.data.voc import open_dataset
from vwe.engine.run_dir import RunDir
from vwe.inference.thresholds import BG_FLOOR, FG_MARGIN, grid_mious
from vwe.metrics import sweep_confusions
from vwe.pipeline import CAM_STAGES, REFINE_STAGES, run_stages
from vwe.refine.random_walk import walk_scores

# generator knobs that move where the CAMs' best background score lies (docs/synthetic.md)
VARIANTS = {
    "default": [],
    "small_parts": ["synthetic.part_fraction=0.15", "synthetic.context_prob=0.95"],
    "large_parts": ["synthetic.part_fraction=0.7", "synthetic.full_frame_prob=0.4",
                    "synthetic.max_instances=2"],
    # held out: not used to choose the rule's power (inference/thresholds.SCORE_POWER)
    "crowded": ["synthetic.max_instances=6", "synthetic.part_fraction=0.45",
                "synthetic.context_prob=0.5", "synthetic.noise_std=8", "synthetic.blur_prob=0.6",
                "synthetic.full_frame_prob=0.1", "synthetic.seed=7"],
}
# the dataclass defaults a user gets without `auto` (VOC's values)
FIXED = {"bkg_score": 0.14, "fg_thres": 0.30, "bg_thres": 0.05, "walk_bg_thres": 0.25}
AUTO = ["eval_cam.bkg_score=auto", "ir_labels.fg_thres=auto", "ir_labels.bg_thres=auto",
        "pseudo_labels.scale=plane", "pseudo_labels.bg_thres=auto"]
# the oracle IR pair: IRNet's margins (0.30 / 0.05 around VOC's best 0.15) around the masks' best
# CAM score: fg = t + FG_MARGIN, bg = max(t − ORACLE_BG_MARGIN, BG_FLOOR)
ORACLE_BG_MARGIN = 0.10
SWEEPS = ["eval_cam.sweep_stop=0.95", "eval_labels.sweep_stop=0.95"]
IR_STAGES = REFINE_STAGES  # ir-labels, train-irn, pseudo-labels, eval-labels


def read(run_dir: Path, stage: str) -> dict[str, Any]:
    return json.loads((run_dir / f"{stage}.json").read_text())


def done_summary(run_dir: Path, stage: str) -> dict[str, Any]:
    """What a stage returned (its done marker), e.g. the thresholds `auto` chose."""
    return json.loads((run_dir / "done" / f"{stage}.json").read_text())["summary"]


def at_threshold(sweep: dict[str, Any], value: float) -> float:
    """The sweep's mIoU at its grid point nearest `value`."""
    thresholds = np.asarray(sweep["thresholds"], np.float64)
    return float(np.asarray(sweep["miou"], np.float64)[np.abs(thresholds - value).argmin()])


def cam_row(run_dir: Path) -> dict[str, Any]:
    report = read(run_dir, "eval_cam")
    sweep = report["variants"]["fused"]["sweep"]
    return {"oracle": sweep["best_threshold"], "oracle_miou": sweep["best"]["miou"],
            "auto": report["bkg_score"],
            "auto_miou": report["variants"]["fused"]["at_bkg_score"]["miou"],
            "fixed": FIXED["bkg_score"], "fixed_miou": at_threshold(sweep, FIXED["bkg_score"])}


def class_scaled_sweep(cfg: Config, thresholds: np.ndarray) -> np.ndarray | None:
    """mIoU of the pseudo labels at every shared score t of the sweep with each class's score
    scaled as the run's `auto` scaled it (t_k = t · its t_k / its t), from the stored walks;
    None where the run used one shared score (pseudo_labels.class_thresholds off)."""
    run, layout = RunDir(cfg), open_dataset(cfg.data)
    summary = done_summary(Path(run.root), "pseudo_labels")
    per_class = (summary.get("auto") or {}).get("class_bg_thres")
    if not per_class:
        return None
    shared = float(summary["bg_thres"])
    ratios = np.array([per_class.get(name, shared) for name in layout.class_names]) / shared
    num_classes = layout.num_classes + 1
    total = np.zeros((len(thresholds), num_classes, num_classes), np.int64)
    for name in layout.read_split(cfg.pseudo_labels.split):
        walk = load_npz(run.walk_file(name))
        keys = np.asarray(walk["keys"], np.int64).reshape(-1)
        scores = walk_scores(walk["rw"].astype(np.float32), walk["plane"].astype(np.float32),
                             image_size(layout.image_path(name)))
        total += class_scaled_confusions(layout.read_checked_mask(name), scores, keys,
                                         ratios[keys], thresholds, num_classes)
    return grid_mious(total, num_classes)


def class_scaled_confusions(truth: np.ndarray, scores: np.ndarray, keys: np.ndarray,
                            ratios: np.ndarray, thresholds: np.ndarray, num_classes: int
                            ) -> np.ndarray:
    """(T, n, n) confusions of one image's labels at each shared score t with map k's score
    t · ratios[k]: the maps divided by their ratio, compared with t (as `walk_to_labels` with a
    threshold per map)."""
    scaled = (scores / np.asarray(ratios, np.float64)[:, None, None]).astype(np.float32)
    return sweep_confusions(truth, scaled, keys, thresholds, num_classes)


def walk_row(configs: list[Config]) -> dict[str, Any]:
    """The walk's threshold over IRNet seeds: the oracle is the best of the mean sweep. Where
    `auto` scaled the score per class, the oracle is the best shared score of that same family
    (each class's score scaled alike), and the best single score for every class is kept
    beside it (`shared_oracle`)."""
    run_dirs = [Path(RunDir(cfg).root) for cfg in configs]
    reports = [read(run_dir, "eval_labels") for run_dir in run_dirs]
    curves = np.mean([np.asarray(r["sweep"]["miou"], np.float64) for r in reports], axis=0)
    thresholds = np.asarray(reports[0]["sweep"]["thresholds"], np.float64)
    best = int(curves.argmax())
    shared = {"shared_oracle": round(float(thresholds[best]), 4),
              "shared_oracle_miou": float(curves[best])}
    scaled = [class_scaled_sweep(cfg, thresholds) for cfg in configs]
    if all(curve is not None for curve in scaled):
        curves = np.mean(scaled, axis=0)
        best = int(np.nanargmax(curves))
    autos = [float(r["scores"]["miou"]) for r in reports]
    return {**shared, "oracle": round(float(thresholds[best]), 4),
            "oracle_miou": float(curves[best]),
            "auto": done_summary(run_dirs[0], "pseudo_labels")["bg_thres"],
            "auto_miou": float(np.mean(autos)), "auto_runs": autos,
            "fixed": FIXED["walk_bg_thres"],
            "fixed_miou": float(np.mean([at_threshold(r["sweep"], FIXED["walk_bg_thres"])
                                         for r in reports]))}


def pseudo_miou(run_dir: Path) -> float:
    return float(read(run_dir, "eval_labels")["scores"]["miou"])


def shared_cam_run(run_dir: Path, suffix: str) -> Path:
    """A sibling run directory that shares `run_dir`'s CAM network and CAMs (symlinks), so each
    IR-threshold variant refines the same CAMs and keeps its own outputs (resumable)."""
    sibling = run_dir.with_name(f"{run_dir.name}-{suffix}")
    sibling.mkdir(parents=True, exist_ok=True)
    for shared in ("train_cam", "cams"):
        link = sibling / shared
        if not link.exists():
            link.symlink_to((run_dir / shared).resolve(), target_is_directory=True)
    return sibling


def seed_runs(run_dir: Path, suffix: str, seeds: list[int]) -> list[tuple[int, Path]]:
    """Seed 1 refines in `run_dir` (or its `suffix` sibling), every other IRNet seed in a
    sibling of its own; all share the CAMs."""
    first = shared_cam_run(run_dir, suffix) if suffix else run_dir
    return [(seed, first if seed == 1 else shared_cam_run(
        run_dir, f"{suffix}-seed{seed}" if suffix else f"seed{seed}")) for seed in seeds]


def measure(config: str, overrides: list[str], generate: bool,
            seeds: list[int]) -> dict[str, Any]:
    """Every threshold of one dataset: the CAM score from the run with every threshold auto;
    the IR pair (auto, the fixed defaults, the oracle CAM score + 0.15 / − 0.10) and the
    walk's threshold as means over IRNet's seeds, each refinement in its own sibling run
    directory (IRNet's seed alone moves the pseudo labels by several points)."""
    base = [*overrides, *SWEEPS]
    cfg = load_config(config, [*base, *AUTO])
    run_dir = Path(RunDir(cfg).root)
    first = ("make_dataset", "pretrain") if generate else ("pretrain",)
    run_stages(cfg, (*first, *CAM_STAGES, *IR_STAGES))
    cams = cam_row(run_dir)
    chosen = done_summary(run_dir, "ir_labels")
    oracle = {"fg_thres": round(cams["oracle"] + FG_MARGIN, 4),
              "bg_thres": round(max(cams["oracle"] - ORACLE_BG_MARGIN, BG_FLOOR), 4)}
    variants = {"auto": ("", []),
                "fixed": ("ir_fixed", [f"ir_labels.fg_thres={FIXED['fg_thres']}",
                                       f"ir_labels.bg_thres={FIXED['bg_thres']}"]),
                "oracle": ("ir_oracle", [f"ir_labels.fg_thres={oracle['fg_thres']}",
                                         f"ir_labels.bg_thres={oracle['bg_thres']}"])}
    ir: dict[str, Any] = {"auto": [chosen["fg_thres"], chosen["bg_thres"]],
                          "fixed": [FIXED["fg_thres"], FIXED["bg_thres"]],
                          "oracle": [oracle["fg_thres"], oracle["bg_thres"]], "seeds": seeds}
    auto_configs = []
    for label, (suffix, pair) in variants.items():
        mious = []
        for seed, sibling in seed_runs(run_dir, suffix, seeds):
            seed_cfg = cfg
            if suffix or seed != 1:
                seed_cfg = load_config(config, [*base, *AUTO, f"run_dir={sibling}",
                                                f"seed={seed}", *pair])
                run_stages(seed_cfg, IR_STAGES)
            mious.append(pseudo_miou(sibling))
            auto_configs += [seed_cfg] if label == "auto" else []
        ir[f"{label}_miou"], ir[f"{label}_runs"] = float(np.mean(mious)), mious
    return {"bkg_score": cams, "ir_labels": ir, "walk_bg_thres": walk_row(auto_configs)}


def generated(name: str, out: Path, train_aug: int) -> tuple[str, list[str]]:
    root, run = out / "data" / name, out / "runs" / name
    return "configs/demo.yaml", [f"data.root={root}", f"run_dir={run}",
                                 f"synthetic.num_train_aug={train_aug}",
                                 "synthetic.num_val=50", "synthetic.num_test=10",
                                 "pseudo_labels.split=train",  # the walks that are scored
                                 *VARIANTS[name]]


def msrc(run: Path, out: Path, data_root: str) -> tuple[str, list[str]]:
    copy = out / "runs" / "msrc"
    if not copy.exists():
        shutil.copytree(run, copy, symlinks=True)
    return "configs/msrc.yaml", [f"data.root={data_root}", f"run_dir={copy}"]


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'dataset':<12} {'threshold':<14} {'oracle':>14} {'auto':>14} {'fixed':>14}"]

    def cell(value: Any, miou: float | None) -> str:
        shown = "/".join(f"{v:g}" for v in value) if isinstance(value, list) else \
            ("-" if value is None else f"{value:.3g}")
        return f"{shown} {100 * miou:5.1f}" if miou is not None else f"{shown} -"

    for dataset, rows in results.items():
        for key, row in rows.items():
            oracle_miou = row.get("oracle_miou")
            lines.append(f"{dataset:<12} {key:<14} {cell(row['oracle'], oracle_miou):>14} "
                         f"{cell(row['auto'], row['auto_miou']):>14} "
                         f"{cell(row['fixed'], row['fixed_miou']):>14}")
    for dataset, rows in results.items():
        ir = rows["ir_labels"]
        if "auto_runs" in ir:
            runs = "; ".join(f"{label} " + " / ".join(f"{100 * m:.1f}" for m in ir[f"{label}_runs"])
                             for label in ("oracle", "auto", "fixed"))
            lines.append(f"{dataset:<12} pseudo labels per IRNet seed {ir['seeds']}: {runs}")
    gaps = [100 * (r["oracle_miou"] - r["auto_miou"]) for rows in results.values()
            for r in rows.values()]
    gains = [100 * (r["auto_miou"] - r["fixed_miou"]) for rows in results.values()
             for r in rows.values()]
    lines.append(f"auto below oracle: max {max(gaps):.1f}, mean {np.mean(gaps):.1f} points; "
                 f"auto above fixed: mean {np.mean(gains):+.1f} points")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/out/thresholds")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--train-aug", type=int, default=1000)
    parser.add_argument("--irn-seeds", default="1,2,3",
                        help="IRNet seeds each refinement is averaged over")
    parser.add_argument("--msrc-run", default="", help="a finished configs/msrc.yaml run dir")
    parser.add_argument("--msrc-root", default="../shared/data/msrc")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    datasets = {name: (*generated(name, out, args.train_aug), True)
                for name in args.variants.split(",") if name}
    if args.msrc_run:
        datasets["msrc"] = (*msrc(Path(args.msrc_run), out, args.msrc_root), False)
    seeds = [int(seed) for seed in args.irn_seeds.split(",")]
    results_file = out / "thresholds.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for name, (config, overrides, generate) in datasets.items():
        results[name] = measure(config, overrides, generate, seeds)
        results_file.write_text(json.dumps(results, indent=2))
        print(table({name: results[name]}), flush=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
