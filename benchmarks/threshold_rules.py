"""Otsu's rule on score^p for several powers p, against the masks' best threshold, on a finished
run's CAMs (and its walks where it has them): how inference/thresholds.SCORE_POWER was chosen.

Per power: the threshold the rule picks and the mIoU it loses against the masks' best on the
stage's own sweep (eval_cam.json; eval_labels.json for the walks). Runs must have been
evaluated with a sweep reaching past the best (eval_cam.sweep_stop, eval_labels.sweep_stop).

    python benchmarks/threshold_rules.py --config configs/demo.yaml [--powers 0.5,0.6,0.7,0.8,1]
        [key=value ...]        # e.g. run_dir=... data.root=...
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from thresholds import at_threshold  # benchmarks/thresholds.py (this script's folder)
from vwe.config import load_config
from vwe.data.io import image_size, load_npz
from vwe.data.voc import open_dataset
from vwe.engine.run_dir import RunDir
from vwe.inference.thresholds import cam_score_histogram, otsu_threshold, score_histogram
from vwe.refine.random_walk import upsample_walk


def row(label: str, histogram: np.ndarray, sweep: dict, powers: list[float]) -> str:
    best = sweep["best"]["miou"]
    cells = [f"{label:<6} oracle {sweep['best_threshold']:.2f} {100 * best:.1f}"]
    for power in powers:
        value = otsu_threshold(histogram, power)
        cells.append(f"p={power:g}: {value:.3f} {100 * (at_threshold(sweep, value) - best):+.1f}")
    return " | ".join(cells)


def walk_maps(layout, run: RunDir, names: list[str]) -> Iterator[np.ndarray]:
    for name in names:
        rw = np.asarray(load_npz(run.walk_file(name))["rw"], np.float32)
        yield upsample_walk(rw, image_size(layout.image_path(name)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--powers", default="0.5,0.6,0.7,0.8,1")
    args, overrides = parser.parse_known_args(argv)
    powers = [float(p) for p in args.powers.split(",")]
    cfg = load_config(args.config, overrides)
    layout, run = open_dataset(cfg.data), RunDir(cfg)
    root = Path(cfg.run_dir)
    names = layout.read_split(cfg.eval_cam.split)
    cams = cam_score_histogram(run.cam_file(name) for name in names)
    sweep = json.loads((root / "eval_cam.json").read_text())["variants"]["fused"]["sweep"]
    print(f"{root}:")
    print(row("CAM", cams, sweep, powers))
    if (root / "eval_labels.json").is_file():
        names = layout.read_split(cfg.pseudo_labels.split)
        walks = score_histogram(walk_maps(layout, run, names))
        print(row("walk", walks, json.loads((root / "eval_labels.json").read_text())["sweep"],
                  powers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
