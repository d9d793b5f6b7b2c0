"""Pseudo labels at one shared background score against one score per class, on a finished run.

For a run whose walks were stored with `pseudo_labels.scale=plane`, scores the split's labels
made from those walks at the `auto` score t and at the per-class scores t · (m_k / m)^p for
each power p (docs/method.md#class-background-scores). Nothing is retrained; the run is only
read.

    python benchmarks/class_thresholds.py --config RUN_DIR/configs/run.yaml \\
        [--split train] [--powers 0.5,1] [key=value ...]
"""

from __future__ import annotations

import argparse

import numpy as np

from vwe.config import load_config
from vwe.data.io import image_size, load_npz
from vwe.data.voc import open_dataset
from vwe.engine.run_dir import RunDir
from vwe.inference.thresholds import background_score_of, cam_histograms, class_background_scores
from vwe.metrics import confusion_matrix, segmentation_scores
from vwe.refine.random_walk import walk_scores, walk_to_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--powers", default="0.5,1")
    args, overrides = parser.parse_known_args()
    cfg = load_config(args.config, overrides)
    run, layout = RunDir(cfg), open_dataset(cfg.data)
    names = [n for n in layout.read_split(args.split) if run.walk_file(n).is_file()]
    num_classes = layout.num_classes + 1
    cams = [run.cam_file(n) for n in names]
    highest, histograms = cam_histograms(cams, layout.num_classes)  # one read of the CAMs
    shared = background_score_of(highest)["bkg_score"]
    rules = {f"shared {shared:g}": np.full(layout.num_classes, shared)}
    for power in (float(p) for p in args.powers.split(",")):
        # rounded as the stage rounds them, so power 0.5 equals its labels
        rules[f"per class, power {power:g}"] = class_background_scores(shared, histograms,
                                                                        power).round(4)
    totals = {rule: np.zeros((num_classes, num_classes), np.int64) for rule in rules}
    for name in names:
        walk = load_npz(run.walk_file(name))
        if "plane" not in walk:
            raise SystemExit(f"{run.walk_file(name)} has no plane: rerun with scale=plane")
        keys = np.asarray(walk["keys"], np.int64).reshape(-1)
        scores = walk_scores(walk["rw"].astype(np.float32), walk["plane"].astype(np.float32),
                             image_size(layout.image_path(name)))
        truth = layout.read_checked_mask(name)
        for rule, per_class in rules.items():
            totals[rule] += confusion_matrix(truth, walk_to_labels(scores, keys, per_class[keys]),
                                             num_classes)
    class_names = ["background", *layout.class_names]
    print(f"{len(names)} images of {args.split} in {run.root}")
    for rule, total in totals.items():
        print(f"{rule:<24} {100 * segmentation_scores(total, class_names)['miou']:.1f}")


if __name__ == "__main__":
    main()
