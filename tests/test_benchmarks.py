"""benchmarks/calibration.py: the whole split scored at the threshold a subset chooses, on
constructed images whose best thresholds are known; benchmarks/stability.py: the classes' own
spreads over runs, from constructed reports; benchmarks/thresholds.py: the walk's sweep with
one score per class."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from vwe.inference.thresholds import CALIBRATION_GRID
from vwe.metrics import confusion_matrix, sweep_confusions
from vwe.refine.random_walk import walk_to_labels

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def benchmark_module(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def calibration_module():
    return benchmark_module("calibration")


def image_sweep(object_score: float, background_score: float) -> np.ndarray:
    """One image: an object of class 1 scoring `object_score` on a background scoring
    `background_score`; right at every threshold in between."""
    truth = np.zeros((20, 20), np.uint8)
    truth[5:15, 5:15] = 1
    scores = np.where(truth > 0, object_score, background_score).astype(np.float32)[None]
    return sweep_confusions(truth, scores, np.array([0]), CALIBRATION_GRID, 2)


def test_subsets_that_agree_with_the_split_reach_the_oracle():
    sweeps = np.stack([image_sweep(0.8, 0.2) for _ in range(6)])
    rows = calibration_module().calibration_rows(sweeps, 2, [1, 3], draws=5, seed=0)
    assert rows["oracle_miou"] == pytest.approx(1.0)
    assert 0.2 <= rows["oracle"] < 0.8
    for row in rows["by_size"].values():
        assert row["mean"] == pytest.approx(1.0) and row["within_2"] == 1.0


def test_a_subset_of_one_kind_of_image_misses_the_split_s_best():
    """Half the images are right for t in [0.5, 0.7), half for [0.1, 0.3): no threshold is right
    for all, and one image alone picks its own kind's best, worse for the split than the
    oracle."""
    sweeps = np.stack([image_sweep(0.7, 0.5) for _ in range(4)]
                      + [image_sweep(0.3, 0.1) for _ in range(4)])
    rows = calibration_module().calibration_rows(sweeps, 2, [1], draws=20, seed=0)
    single = rows["by_size"]["1"]
    assert single["worst"] < rows["oracle_miou"] - 0.05
    assert single["mean"] < rows["oracle_miou"]
    assert "8" not in calibration_module().calibration_rows(sweeps, 2, [8], 1, 0)["by_size"]


def write_reports(run_dir: Path, cam_iou: list[float], label_iou: list[float] | None) -> None:
    names = ["background", "cat", "dog"]
    run_dir.mkdir()
    (run_dir / "eval_cam.json").write_text(json.dumps(
        {"class_names": names, "variants": {"fused": {"at_bkg_score": {"iou": cam_iou}}}}))
    if label_iou is not None:
        (run_dir / "eval_labels.json").write_text(json.dumps(
            {"class_names": names, "scores": {"iou": label_iou}}))


def test_class_spreads_are_each_class_s_range_over_the_runs(tmp_path):
    stability = benchmark_module("stability")
    write_reports(tmp_path / "a", [0.90, 0.50, 0.70], [0.9, 0.6, 0.6])
    write_reports(tmp_path / "b", [0.85, 0.30, 0.70], None)  # labels not scored in this run
    write_reports(tmp_path / "c", [0.88, 0.45, 0.72], [0.9, 0.6, 0.6])
    runs = {name: stability.class_ious(tmp_path / name) for name in "abc"}
    assert set(runs["b"]) == {"cam"}
    spreads = stability.class_spreads(runs)
    cam = spreads["cam"]
    assert cam["classes"] == pytest.approx({"background": 5.0, "cat": 20.0, "dog": 2.0})
    assert cam["mean"] == pytest.approx(9.0) and cam["widest"] == "cat"
    # the same labels in both runs that scored them: no spread, even though the CAMs moved
    assert spreads["pseudo"]["mean"] == pytest.approx(0.0)
    assert "seg" not in spreads  # no run scored it
    table = stability.class_table(spreads)
    assert "cat 20.0" in table and table.splitlines()[1].split()[:2] == ["cam", "9.0"]


def test_class_scaled_sweep_equals_the_labels_at_each_class_s_score():
    """Each shared score t of the sweep scores the labels walk_to_labels makes with class k at
    t · ratio_k; here a dim class (ratio 0.5) and a bright one (ratio 2) are right only at
    their own scores, so the best t is the one that suits both."""
    rng = np.random.default_rng(0)
    truth = np.zeros((16, 16), np.uint8)
    truth[2:8, 2:8], truth[9:15, 9:15] = 1, 2
    scores = np.zeros((2, 16, 16), np.float32)
    scores[0] = np.where(truth == 1, 0.15, 0.05) + rng.uniform(0, 0.01, (16, 16))
    scores[1] = np.where(truth == 2, 0.9, 0.4) + rng.uniform(0, 0.01, (16, 16))
    keys, ratios = np.array([0, 1]), np.array([0.5, 2.0])
    grid = np.round(np.arange(0.02, 0.6, 0.02), 2)
    sweep = benchmark_module("thresholds").class_scaled_confusions(truth, scores, keys, ratios,
                                                                   grid, 3)
    for t, conf in zip(grid, sweep):
        labels = walk_to_labels(scores, keys, t * ratios)
        assert np.array_equal(conf, confusion_matrix(truth, labels, 3)), t
    correct = [int(np.trace(conf)) for conf in sweep]
    assert correct[int(np.argmax(correct))] == truth.size  # t in (0.21, 0.3): both classes right
    assert grid[int(np.argmax(correct))] > 0.2
