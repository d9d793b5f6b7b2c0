"""Does the classifier's score on erased or kept CAM regions find the CAM threshold without masks?

For the first N images of eval_cam.split of a finished run and each of their tags c, per
threshold t on a 0.05 grid: the region R = CAM_c > t is erased (set to 0, the normalised mean)
and, separately, kept alone; the class's sigmoid score is read for both. Rules that pick t from
these curves are printed against the masks' best threshold on the same images
(docs/method.md#auto-thresholds, "rules measured and not kept").

    python benchmarks/erasure.py --config configs/demo.yaml [--images 100] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from vwe.config import Config, load_config
from vwe.data.cam_files import load_cam
from vwe.data.io import read_image
from vwe.data.transforms import normalize
from vwe.data.voc import open_dataset
from vwe.engine.run_dir import RunDir
from vwe.metrics import segmentation_scores, sweep_confusions
from vwe.stages.make_cam import load_cam_net

GRID = np.round(np.arange(0.05, 0.86, 0.05), 2)
SWEEP = np.round(np.arange(0.0, 0.96, 0.01), 2)


def curves(cfg: Config, limit: int) -> dict[str, list]:
    """Erase / keep scores per (image, tag) over GRID, and the masks' mIoU over SWEEP."""
    torch.set_grad_enabled(False)
    layout = open_dataset(cfg.data)
    names = layout.masked_names(layout.read_split(cfg.eval_cam.split))[:limit]
    model, codebook, _ = load_cam_net(cfg, layout.num_classes, torch.device("cpu"))
    model.eval()
    run = RunDir(cfg)
    n = layout.num_classes + 1
    confusions = np.zeros((len(SWEEP), n, n), np.int64)
    erase, keep, base = [], [], []
    for name in names:
        keys, cams = load_cam(run.cam_file(name), "high_res")
        confusions += sweep_confusions(layout.read_mask(name), cams, keys, SWEEP, n)
        image = torch.from_numpy(normalize(read_image(layout.image_path(name)))).permute(2, 0, 1)
        for cam, c in zip(cams, keys):
            regions = torch.from_numpy(np.stack([cam > t for t in GRID]))[:, None].float()
            batch = torch.cat([image * (1 - regions), image * regions, image[None]])
            scores = torch.sigmoid(model(batch, codebook).img_logits[:, c]).numpy()
            erase.append(scores[:len(GRID)].tolist())
            keep.append(scores[len(GRID):-1].tolist())
            base.append(float(scores[-1]))
    mious = [segmentation_scores(c, ["bg", *layout.class_names])["miou"] for c in confusions]
    return {"grid": GRID.tolist(), "sweep": SWEEP.tolist(), "mious": mious,
            "erase": erase, "keep": keep, "base": base}


def largest_below(rows: np.ndarray) -> np.ndarray:
    """Per row, the largest grid value whose entry is True (the grid's first where none is)."""
    return np.array([GRID[np.nonzero(row)[0].max()] if row.any() else GRID[0] for row in rows])


def rules(out: dict[str, list]) -> dict[str, float]:
    erase, keep = np.array(out["erase"]), np.array(out["keep"])
    relative = erase / np.array(out["base"])[:, None]
    per_pair = GRID[(keep - erase).argmax(1)]
    return {"largest keep - erase (mean curve)": float(GRID[(keep - erase).mean(0).argmax()]),
            "largest keep - erase (per pair, median)": float(np.median(per_pair)),
            "largest t with erase < 0.3 (median)": float(np.median(largest_below(erase < 0.3))),
            "largest t with erase < base / 2 (median)":
                float(np.median(largest_below(relative < 0.5))),
            "largest t with keep >= 0.5 (median)": float(np.median(largest_below(keep >= 0.5)))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--out", default="benchmarks/out/erasure.json")
    args, overrides = parser.parse_known_args(argv)
    out = curves(load_config(args.config, overrides), args.images)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out))
    sweep, mious = np.array(out["sweep"]), np.array(out["mious"])
    best = int(mious.argmax())
    print(f"{len(out['base'])} image-tag pairs; oracle {sweep[best]:.2f}: {100 * mious[best]:.1f}")
    print("median erase:", np.round(np.median(out["erase"], 0), 2).tolist())
    print("median keep: ", np.round(np.median(out["keep"], 0), 2).tolist())
    for rule, t in rules(out).items():
        miou = 100 * mious[int(np.abs(sweep - t).argmin())]
        print(f"{rule:44s} t={t:.2f} mIoU {miou:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
