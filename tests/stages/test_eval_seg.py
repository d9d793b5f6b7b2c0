"""eval-seg: scores of hand-made prediction folders against hand-computed values."""

import json

import numpy as np
import pytest

from vwe.cli import main
from vwe.data.io import save_label_png
from vwe.data.voc import VocLayout


@pytest.fixture()
def predictions(tiny_dataset, tmp_path):
    """raw/ = the GT with 255 → 0 (perfect), crf/ = all background, for the val split."""
    layout = VocLayout(tiny_dataset)
    pred_dir = tmp_path / "run" / "seg" / "val"
    background, valid, present = 0, 0, set()
    for name in layout.read_split("val"):
        gt = layout.read_mask(name)
        save_label_png(pred_dir / "raw" / f"{name}.png", np.where(gt == 255, 0, gt))
        save_label_png(pred_dir / "crf" / f"{name}.png", np.zeros_like(gt))
        background += int((gt == 0).sum())
        valid += int((gt != 255).sum())
        present |= set(np.unique(gt[gt != 255]).tolist())
    return tmp_path / "run", pred_dir, background / valid / len(present)


def test_scores_raw_and_crf_folders(tiny_dataset, predictions, capsys):
    run_dir, _, all_background_miou = predictions
    assert main(["eval-seg", f"data.root={tiny_dataset}", f"run_dir={run_dir}"]) == 0
    out = capsys.readouterr().out
    assert "DeepLab (crf) on val" in out and "raw  mIoU 100.0" in out
    report = json.loads((run_dir / "eval_seg.json").read_text())
    assert report["num_images"] == 16 and report["class_names"][0] == "background"
    assert report["variants"]["raw"]["miou"] == pytest.approx(1.0)
    assert report["variants"]["crf"]["miou"] == pytest.approx(all_background_miou)
    confusion = np.array(report["variants"]["crf"]["confusion"])
    assert (confusion[:, 1:] == 0).all()


def test_missing_or_misshapen_predictions_fail_in_one_line(tiny_dataset, predictions, capsys):
    run_dir, pred_dir, _ = predictions
    args = ["eval-seg", f"data.root={tiny_dataset}", f"run_dir={run_dir}"]
    victim = sorted((pred_dir / "crf").glob("*.png"))[2]
    save_label_png(victim, np.zeros((5, 5), np.uint8))
    assert main(args) == 2
    err = capsys.readouterr().err
    last_line = err.rstrip("\n").split("\n")[-1]  # after the progress bar's line
    assert last_line.startswith("vwe eval-seg: error: prediction") and "is 5x5" in last_line
    victim.unlink()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "1 of 16 predictions missing" in err and victim.stem in err
    assert main([*args, f"eval_seg.pred_dir={run_dir / 'nowhere'}"]) == 2
    assert "no predictions in" in capsys.readouterr().err
    assert not (run_dir / "eval_seg.json").exists()
