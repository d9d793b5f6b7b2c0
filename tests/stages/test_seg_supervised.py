"""A short fully supervised run (train-seg on the GT masks → infer-seg → eval-seg) beats the
all-background prediction, whose mIoU is computed here from the masks alone."""

import json

import numpy as np
import pytest

from vwe.cli import main
from vwe.data.voc import VocLayout


def all_background_miou(layout, names):
    """IoU_bkg = background pixels / valid pixels; every other present class scores 0."""
    background, valid, present = 0, 0, set()
    for name in names:
        gt = layout.read_mask(name)
        background += int((gt == 0).sum())
        valid += int((gt != 255).sum())
        present |= set(np.unique(gt[gt != 255]).tolist())
    return background / valid / len(present)


@pytest.mark.usefixtures("single_torch_thread")
def test_supervised_run_beats_all_background(tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    args = [f"data.root={tiny_dataset}", f"run_dir={run_dir}", "data.num_workers=0",
            "device=cpu", "seg.backbone=resnet_tiny", "seg.pretrained=none",
            "seg.frozen_bn=false", f"seg.label_dir={tiny_dataset / 'SegmentationClassAug'}",
            "train_seg.iterations=120", "train_seg.batch_size=8", "train_seg.crop_size=64",
            "train_seg.lr=0.002", "infer_seg.crf.workers=0"]
    for command in ("train-seg", "infer-seg", "eval-seg"):
        assert main([command, *args]) == 0
    report = json.loads((run_dir / "eval_seg.json").read_text())
    layout = VocLayout(tiny_dataset)
    baseline = all_background_miou(layout, layout.read_split("val"))
    assert 0.05 < baseline < 0.15
    for variant in ("raw", "crf"):
        assert report["variants"][variant]["miou"] > 2.5 * baseline, (variant, baseline)
