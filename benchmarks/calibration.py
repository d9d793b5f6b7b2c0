"""How many labelled images `auto`'s calibration needs: the whole split's mIoU at the threshold
chosen on n random labelled images, against the masks' best (oracle) and the mask-free rule.

For a finished run (CAMs, and walks where the run has them), every image's confusion matrices
over the 0.00–0.99 grid are computed once; then, for each n and each of --draws random subsets
of n images, the threshold best on the subset (inference/thresholds.best_on_masks' rule) is
scored on the whole split. Printed per threshold (CAM background score; walk background
threshold): oracle value and mIoU, the mask-free `auto` value and mIoU, and per n the mean ±
standard deviation and the worst draw's mIoU, with the share of draws within 2 points of the
oracle (docs/method.md#auto-thresholds).

    python benchmarks/calibration.py --config configs/msrc.yaml --root ../shared/data/msrc \\
        --run runs/msrc [--sizes 3,5,10,20,40] [--draws 50] [--out benchmarks/out/calibration]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vwe.config import load_config
from vwe.data.io import image_size, load_npz
from vwe.data.voc import open_dataset
from vwe.inference.thresholds import (
    CALIBRATION_GRID,
    auto_walk_threshold,
    grid_mious,
    otsu_threshold,
    score_histogram,
)
from vwe.metrics import sweep_confusions
from vwe.refine.random_walk import upsample_walk

Maps = Callable[[str], tuple[np.ndarray, np.ndarray]]  # name → (score maps (K, H, W), keys)


def per_image_sweeps(layout: Any, names: list[str], maps: Maps) -> np.ndarray:
    """(N, T, n, n): each image's confusion matrices over CALIBRATION_GRID."""
    classes = layout.num_classes + 1
    return np.stack([sweep_confusions(layout.read_checked_mask(name), *maps(name),
                                      CALIBRATION_GRID, classes) for name in names])


def calibration_rows(sweeps: np.ndarray, classes: int, sizes: list[int], draws: int,
                     seed: int) -> dict[str, Any]:
    """Oracle and, per subset size, the whole split's mIoU at the subset's best threshold."""
    whole = grid_mious(sweeps.sum(axis=0), classes)
    oracle = int(np.nanargmax(whole))
    rng = np.random.default_rng(seed)
    rows: dict[str, Any] = {"oracle": float(CALIBRATION_GRID[oracle]),
                            "oracle_miou": float(whole[oracle]), "by_size": {}}
    for size in sizes:
        if size >= len(sweeps):
            continue
        scores = []
        for _ in range(draws):
            subset = rng.choice(len(sweeps), size, replace=False)
            chosen = grid_mious(sweeps[subset].sum(axis=0), classes)
            scores.append(float(whole[int(np.nanargmax(chosen))]))
        values = np.array(scores)
        rows["by_size"][str(size)] = {
            "mean": float(values.mean()), "std": float(values.std()), "worst": float(values.min()),
            "within_2": float(np.mean(values >= whole[oracle] - 0.02))}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--root", required=True, help="data.root")
    parser.add_argument("--run", required=True, help="a run directory with cams/ (and walks/)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--sizes", default="3,5,10,20,40")
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/out/calibration")
    args = parser.parse_args(argv)
    layout = open_dataset(load_config(args.config, [f"data.root={args.root}"]).data)
    names = layout.masked_names(layout.read_split(args.split))
    run, classes = Path(args.run), layout.num_classes + 1
    sizes = [int(size) for size in args.sizes.split(",")]

    def cams(name: str) -> tuple[np.ndarray, np.ndarray]:
        arrays = load_npz(run / "cams" / f"{name}.npz")
        return np.asarray(arrays["high_res"], np.float32), np.asarray(arrays["keys"], np.int64)

    def walks(name: str) -> tuple[np.ndarray, np.ndarray]:
        arrays = load_npz(run / "walks" / f"{name}.npz")
        size = image_size(layout.image_path(name))
        return (upsample_walk(arrays["rw"].astype(np.float32), size),
                np.asarray(arrays["keys"], np.int64))

    results: dict[str, Any] = {}
    histogram = score_histogram(cams(name)[0] for name in names)
    otsu = otsu_threshold(histogram)
    kinds: list[tuple[str, Maps, float]] = [("bkg_score", cams, otsu)]
    if (run / "walks").is_dir():
        kinds.append(("walk_bg_thres", walks, auto_walk_threshold_of(names, walks)))
    for kind, maps, auto in kinds:
        sweeps = per_image_sweeps(layout, names, maps)
        rows = calibration_rows(sweeps, classes, sizes, args.draws, args.seed)
        whole = grid_mious(sweeps.sum(axis=0), classes)
        rows["auto"] = auto
        rows["auto_miou"] = float(whole[int(np.abs(CALIBRATION_GRID - auto).argmin())])
        results[kind] = rows
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(results, indent=2))
    print(table(results, len(names)))
    return 0


def auto_walk_threshold_of(names: list[str], walks: Maps) -> float:
    """The mask-free walk threshold pseudo-labels would choose (Otsu over the walked maps)."""
    return float(auto_walk_threshold(walks(name)[0] for name in names)["bg_thres"])


def table(results: dict[str, Any], images: int) -> str:
    lines = [f"{images} images; whole-split mIoU at the threshold chosen on n random labelled "
             "images (mean ± sd, worst; share of draws within 2 points of the oracle)"]
    for kind, rows in results.items():
        lines.append(f"{kind}: oracle {rows['oracle']:.2f} {100 * rows['oracle_miou']:.1f}; "
                     f"mask-free auto {rows['auto']:.3g} {100 * rows['auto_miou']:.1f}")
        for size, row in rows["by_size"].items():
            lines.append(f"  n={size:>3}: {100 * row['mean']:5.1f} ± {100 * row['std']:.1f}, "
                         f"worst {100 * row['worst']:.1f}, within 2: {100 * row['within_2']:.0f} %")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
