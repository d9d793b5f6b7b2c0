"""Does bfloat16 autocast change the CAM scores? train-cam → make-cam → eval-cam on the generated
data with amp off and on for several seeds; prints JSON with each mIoU, the fp32 seed-to-seed
spread and whether every bf16 score lies within it (docs/performance.md#precision-benchmark).

    python benchmarks/amp_scores.py [--seeds 1 2 3] [--size tiny] [--epochs 10]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import tempfile
from pathlib import Path

from vwe.cli import main as vwe


def cam_miou(root: Path, run_dir: Path, seed: int, amp: bool, epochs: int) -> float:
    flag = str(amp).lower()
    common = [f"data.root={root}", f"run_dir={run_dir}", f"seed={seed}", "data.num_workers=0",
              "model.backbone=resnet_tiny", "model.pretrained=none", "model.frozen_bn=false",
              "model.freeze_stem=false", "model.detach_after_stage2=false",
              "model.num_words=16", "train_cam.batch_size=8", "train_cam.crop_size=64",
              "train_cam.lr=0.05", "train_cam.momentum=0.9", f"train_cam.epochs={epochs}",
              f"train_cam.amp={flag}", f"cam.amp={flag}", "cam.split=train",
              "eval_cam.split=train", "eval_cam.sweep=false"]
    for stage in ("train-cam", "make-cam", "eval-cam"):
        with contextlib.redirect_stdout(io.StringIO()):  # eval-cam prints its table
            status = vwe([stage, *common])
        if status != 0:
            raise RuntimeError(f"{stage} failed for seed {seed}, amp {amp}")
    report = json.loads((run_dir / "eval_cam.json").read_text())
    return float(next(iter(report["variants"].values()))["at_bkg_score"]["miou"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--size", default="tiny", choices=["tiny", "default"])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        assert vwe(["make-dataset", f"synthetic.size={args.size}", f"data.root={root}"]) == 0
        scores = {name: [cam_miou(root, Path(tmp) / f"{name}{seed}", seed, amp, args.epochs)
                         for seed in args.seeds]
                  for name, amp in (("fp32", False), ("bf16", True))}
    low, high = min(scores["fp32"]), max(scores["fp32"])
    print(json.dumps({"benchmark": "amp_scores", "size": args.size, "seeds": args.seeds,
                      "epochs": args.epochs, "cam_miou": scores,
                      "fp32_spread": [round(low, 4), round(high, 4)],
                      "bf16_within_spread": all(low <= s <= high for s in scores["bf16"]),
                      "mean_difference": round(sum(scores["bf16"]) / len(args.seeds)
                                               - sum(scores["fp32"]) / len(args.seeds), 4)},
                     indent=2))


if __name__ == "__main__":
    main()
