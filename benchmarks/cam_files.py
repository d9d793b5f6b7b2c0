"""CAM-file bytes per image and their scores, for each way make-cam can store them. Prints JSON.

Takes a run whose CAM network is trained (`make demo` makes one), computes the CAMs of the
first `--images` images of `eval_cam.split` once, with their M_img / M_word parts, and stores each
the three ways make-cam can (docs/formats.md#cam-files): the former default (parts, float32,
uncompressed), today's default (fused only, float32, deflated) and float16. Bytes are those of
the `.npz` that `save_npz` writes; the scores are the CAM mIoU of the stored fused map at
`eval_cam.bkg_score` and the best of the sweep, as eval-cam computes them.

    python benchmarks/cam_files.py --config configs/demo.yaml --run-dir runs/demo
"""

from __future__ import annotations

import argparse
import io
import json

import numpy as np
import torch

from vwe.config import load_config
from vwe.data.cam_files import stored_cam_arrays
from vwe.data.io import read_image
from vwe.data.voc import open_dataset
from vwe.engine.run_dir import RunDir
from vwe.inference.cams import multiscale_cams
from vwe.metrics import segmentation_scores, sweep_confusions, threshold_grid
from vwe.stages.make_cam import load_cam_net

# name → (save_parts, dtype, deflated)
STORAGE = {"parts_float32_uncompressed": (True, "float32", False),
           "fused_float32_deflated": (False, "float32", True),
           "fused_float16_deflated": (False, "float16", True)}


def npz_bytes(arrays: dict[str, np.ndarray], deflated: bool) -> int:
    buffer = io.BytesIO()
    (np.savez_compressed if deflated else np.savez)(buffer, **arrays)
    return buffer.getbuffer().nbytes


def measure(config: str, run_dir: str, images: int) -> dict:
    cfg = load_config(config, [f"run_dir={run_dir}"])
    layout = open_dataset(cfg.data)
    if not RunDir(cfg).cam_checkpoint.is_file():
        raise SystemExit(f"{RunDir(cfg).cam_checkpoint} not found: run `make demo` (or "
                         "`vwe train-cam`) first")
    names, labels = layout.split_with_labels(cfg.eval_cam.split)
    names = [n for n in names if layout.mask_path(n).is_file()][:images]
    model, codebook = load_cam_net(cfg, len(layout.class_names), torch.device("cpu"))
    thresholds = np.concatenate([[cfg.eval_cam.bkg_score], threshold_grid(
        cfg.eval_cam.sweep_start, cfg.eval_cam.sweep_stop, cfg.eval_cam.sweep_step, "eval_cam")])
    classes = ["background", *layout.class_names]
    bytes_total = dict.fromkeys(STORAGE, 0)
    confusions = {k: np.zeros((len(thresholds), len(classes), len(classes)), np.int64)
                  for k in STORAGE}
    for name in names:
        keys = np.flatnonzero(labels[name])
        cams = multiscale_cams(model, read_image(layout.image_path(name)), keys, cfg.cam,
                               codebook)
        gt = layout.read_checked_mask(name)
        for storage, (parts, dtype, deflated) in STORAGE.items():
            stored = stored_cam_arrays(cams, parts, dtype)
            bytes_total[storage] += npz_bytes(stored, deflated)
            confusions[storage] += sweep_confusions(
                gt, stored["high_res"].astype(np.float32), keys, thresholds, len(classes))
    before = bytes_total["parts_float32_uncompressed"]
    rows = {}
    for storage, total in bytes_total.items():
        mious = [segmentation_scores(c, classes)["miou"] for c in confusions[storage]]
        rows[storage] = {"bytes_per_image": round(total / len(names)),
                         "fraction_of_parts_float32_uncompressed": round(total / before, 4),
                         "miou_at_bkg_score": round(100 * mious[0], 3),
                         "miou_sweep_best": round(100 * max(mious[1:]), 3)}
    return {"benchmark": "cam_files", "config": config, "images": len(names),
            "bkg_score": cfg.eval_cam.bkg_score, "storage": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--run-dir", default="runs/demo")
    parser.add_argument("--images", type=int, default=300)
    args = parser.parse_args()
    print(json.dumps(measure(args.config, args.run_dir, args.images), indent=2))


if __name__ == "__main__":
    main()
