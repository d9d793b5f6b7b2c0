"""Degenerate results: each check against a hand-made case, and the warnings through the CLI on
constructed predictions (all background: one class, input-independent, no better than the
baseline)."""

import json

import numpy as np
import pytest

from vwe.cli import main
from vwe.data.io import save_label_png
from vwe.data.voc import VocLayout
from vwe.diagnostics import (
    all_background_miou,
    at_sweep_edge,
    below_baseline,
    dominant_class,
    input_independent,
    loss_not_falling,
    painted_tags,
)

NAMES = ["background", "cat", "dog"]


def test_all_background_miou_by_hand():
    # GT rows: 60 background, 30 cat, 10 dog pixels -> IoU_bg 60/100, cat and dog 0
    confusion = np.array([[50, 10, 0], [20, 10, 0], [5, 0, 5]])
    assert all_background_miou(confusion) == pytest.approx(0.6 / 3)
    assert all_background_miou(np.array([[0, 0], [0, 4]])) == 0.0  # no background in the GT


def test_painted_tags_uses_the_first_tag():
    gt = np.zeros((2, 3), np.uint8)
    assert (painted_tags(gt, np.array([0, 1.0, 1.0])) == 2).all()
    assert (painted_tags(gt, np.zeros(3)) == 0).all()  # a negative photo: background


def test_dominant_class_names_the_class_and_share():
    assert dominant_class(np.array([[90, 5, 0], [5, 0, 0], [0, 0, 0]]), NAMES, "x") is None
    text = dominant_class(np.array([[990, 5, 0], [5, 0, 0], [0, 0, 0]]), NAMES, "eval-seg")
    assert text.startswith("eval-seg: 'background' covers 99.5 %") and "\n" not in text


def test_sweep_edge_and_baseline():
    grid = [0.0, 0.1, 0.2, 0.3]
    assert at_sweep_edge(0.0, grid, "eval-cam", "k") and at_sweep_edge(0.3, grid, "eval-cam", "k")
    assert at_sweep_edge(0.1, grid, "eval-cam", "k") is None
    text = below_baseline(0.30, {"all background": 0.04, "tags painted": 0.325}, "eval-cam")
    assert "tags painted 32.5" in text and "all background" not in text
    assert below_baseline(0.5, {"all background": 0.04}, "eval-cam") is None


def test_input_independence_and_a_loss_that_does_not_fall():
    same = np.tile([[0.7, 0.2, 0.1]], (5, 1))
    assert "do not depend on the input" in input_independent(same, "eval-seg")
    varied = same + np.array([[0.0, 0.05, -0.05]]) * np.arange(5)[:, None] / 10
    assert input_independent(varied, "eval-seg") is None
    assert "did not fall" in loss_not_falling([1.0] * 40, "train-seg")
    assert loss_not_falling(list(np.linspace(2, 1, 40)), "train-seg") is None
    assert loss_not_falling([1.0] * 10, "train-seg") is None  # too few steps to say


def test_constructed_degenerate_predictions_warn_through_the_cli(tiny_dataset, tmp_path):
    """Background everywhere, for labels and predictions: each warning in its JSON."""
    voc = VocLayout(tiny_dataset)
    labels, predictions = tmp_path / "labels", tmp_path / "predictions"
    for split, folder in (("train", labels), ("val", predictions / "raw")):
        for name in voc.read_split(split):
            save_label_png(folder / f"{name}.png", np.zeros_like(voc.read_mask(name)))
    common = [f"data.root={tiny_dataset}", f"run_dir={tmp_path / 'run'}"]
    assert main(["eval-labels", *common, f"eval_labels.label_dir={labels}",
                 "eval_labels.sweep=false"]) == 0
    assert main(["eval-seg", *common, f"eval_seg.pred_dir={predictions}"]) == 0
    label_warnings = json.loads((tmp_path / "run" / "eval_labels.json").read_text())["warnings"]
    seg_warnings = json.loads((tmp_path / "run" / "eval_seg.json").read_text())["warnings"]
    assert any("'background' covers 100.0 %" in w for w in label_warnings)
    assert any("no better than a trivial baseline" in w for w in label_warnings)
    assert any("do not depend on the input" in w for w in seg_warnings)
    assert any("'background' covers 100.0 %" in w for w in seg_warnings)
