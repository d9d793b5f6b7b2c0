"""Time IRNet's random walk (docs/refinement.md#random-walk step 3) on one VOC-sized image; prints
JSON lines.

    python benchmarks/random_walk.py [--dense-size 40 50] [--device cuda]

The sparse walk runs on a 500×375 image (stride-4 grid 94×125, K=3 random CAMs, a random smooth
boundary map). With --dense-size, the official dense walk also runs on a small grid, with the
sparse one on the same input for comparison. peak_rss_mb is the process peak so far (it includes
the ≈ 520 MB of the torch import; peak_rss_before_mb is the peak before the walk), so the sparse
case runs first.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
from scipy.ndimage import gaussian_filter

from vwe.refine.random_walk import random_walk


def make_inputs(h: int, w: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random CAMs (k, h, w) in [0, 1) and a smooth boundary map (h, w) rescaled to [0, 1]."""
    rng = np.random.default_rng(seed)
    edge = gaussian_filter(rng.random((h, w)), sigma=2)
    edge = (edge - edge.min()) / (edge.max() - edge.min())
    return rng.random((k, h, w)).astype(np.float32), edge.astype(np.float32)


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(h: int, w: int, k: int, method: str, device: str | None) -> dict:
    """One timed walk; returns the JSON record."""
    cams, edge = make_inputs(h, w, k)
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    out = random_walk(cams, edge, method=method, device=device)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 3), "peak_rss_mb": round(peak_rss_mb(), 1),
            "peak_rss_before_mb": round(rss_before, 1),
            "hw": [h, w], "k": k, "method": method, "device": device or "cpu",
            "checksum": float(out.sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="also run the dense walk on this stride-4 grid (e.g. 40 50)")
    parser.add_argument("--device", default=None, help="torch device for the sparse walk")
    args = parser.parse_args()
    print(json.dumps(run(94, 125, 3, "sparse", args.device)))  # 500×375 image at stride 4
    if args.dense_size:
        h, w = args.dense_size
        print(json.dumps(run(h, w, 3, "sparse", args.device)))
        print(json.dumps(run(h, w, 3, "dense", None)))


if __name__ == "__main__":
    main()
