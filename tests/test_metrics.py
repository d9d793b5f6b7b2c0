"""Metrics against hand-computed numbers and brute-force loops."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vwe.metrics import (
    cam_to_label,
    confusion_matrix,
    format_table,
    scores_to_json,
    segmentation_scores,
    sweep_confusions,
)

NAMES = ["background", "cat", "dog", "cow", "horse"]
# Rows GT, columns prediction. cow is predicted but never in GT; horse is in neither.
HAND_CONF = np.array([
    [50, 5, 5, 10, 0],
    [10, 20, 0, 0, 0],
    [0, 5, 5, 0, 0],
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
])


def _pixels_from_confusion(conf: np.ndarray, rng: np.random.Generator) -> tuple:
    pairs = [(g, p) for g in range(len(conf)) for p in range(len(conf)) for _ in range(conf[g, p])]
    pairs += [(255, 1)] * 7 + [(255, 0)] * 3  # ignored pixels
    pairs = np.array(pairs)[rng.permutation(len(pairs))]
    return pairs[:, 0].reshape(10, -1), pairs[:, 1].reshape(10, -1)


def test_confusion_matrix_tiny_hand_example():
    gt = np.array([[0, 1], [255, 1]], dtype=np.uint8)
    pred = np.array([[0, 0], [1, 1]])
    assert confusion_matrix(gt, pred, 2).tolist() == [[1, 0], [1, 1]]


def test_confusion_matrix_recovers_counts_and_ignores_255():
    gt, pred = _pixels_from_confusion(HAND_CONF, np.random.default_rng(0))
    conf = confusion_matrix(gt.astype(np.uint8), pred, 5)
    assert conf.dtype == np.int64
    np.testing.assert_array_equal(conf, HAND_CONF)


def test_scores_by_hand():
    scores = segmentation_scores(HAND_CONF, NAMES)
    # IoU = TP / (row + col - TP): 50/80, 20/40, 5/15, 0/10, 0/0.
    np.testing.assert_allclose(scores["iou"][:4], [0.625, 0.5, 1 / 3, 0.0])
    assert math.isnan(scores["iou"][4])
    # precision = TP / column: 50/60, 20/30, 5/10, 0/10, none predicted.
    np.testing.assert_allclose(scores["precision"][:4], [50 / 60, 2 / 3, 0.5, 0.0])
    assert math.isnan(scores["precision"][4])
    # recall = TP / row: 50/70, 20/30, 5/10; cow and horse have no GT.
    np.testing.assert_allclose(scores["recall"][:3], [50 / 70, 2 / 3, 0.5])
    assert math.isnan(scores["recall"][3]) and math.isnan(scores["recall"][4])
    # mIoU over the classes present in GT only (cow's IoU 0 does not count).
    assert scores["miou"] == pytest.approx((0.625 + 0.5 + 1 / 3) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(75 / 110)
    assert scores["mean_recall"] == pytest.approx((50 / 70 + 2 / 3 + 0.5) / 3)
    assert scores["present"].tolist() == [True, True, True, False, False]


def test_table_and_json():
    scores = segmentation_scores(HAND_CONF, NAMES)
    table = format_table(scores, "CAM train")
    assert table.splitlines()[0] == "CAM train"
    cat_row = next(line for line in table.splitlines() if line.startswith("cat"))
    assert cat_row.split() == ["cat", "50.0", "66.7", "66.7"]
    miou_row = next(line for line in table.splitlines() if line.startswith("mIoU"))
    assert miou_row.split()[1] == "48.6"
    assert "(not in GT)" in next(line for line in table.splitlines() if line.startswith("cow"))
    plain = scores_to_json(scores)
    text = json.dumps(plain, allow_nan=False)  # NaN must have become null
    back = json.loads(text)
    assert back["iou"][4] is None and back["iou"][1] == 0.5
    assert back["gt_pixels"] == [70, 30, 10, 0, 0]


def test_cam_to_label_ties_go_to_background_and_keys_map():
    cams = np.array([[[0.2, 0.5]], [[0.1, 0.5]]], dtype=np.float32)  # (K=2, 1, 2)
    keys = np.array([2, 6])
    assert cam_to_label(cams, keys, 0.2).tolist() == [[0, 3]]  # tie at 0.2 → bg; 0.5 tie → first
    assert cam_to_label(cams, keys, 0.5).tolist() == [[0, 0]]


def _brute_force(gt, cams, keys, thresholds, n):
    return np.stack([confusion_matrix(gt, cam_to_label(cams, keys, t), n) for t in thresholds])


def test_sweep_equals_brute_force_with_ties():
    rng = np.random.default_rng(1)
    n, height, width = 6, 13, 17
    keys = np.array([0, 2, 4])
    # Scores on the 0.01 grid so that many pixels tie with a threshold or with each other.
    cams = (rng.integers(0, 61, size=(3, height, width)) / 100).astype(np.float32)
    gt = rng.integers(0, n, size=(height, width)).astype(np.uint8)
    gt[rng.random((height, width)) < 0.1] = 255
    thresholds = [0.3, 0.0, 0.14, 0.6, 0.05, 0.59, 0.31]  # unsorted on purpose
    np.testing.assert_array_equal(sweep_confusions(gt, cams, keys, thresholds, n),
                                  _brute_force(gt, cams, keys, thresholds, n))
    grid = np.round(np.arange(0, 61) * 0.01, 10)
    np.testing.assert_array_equal(sweep_confusions(gt, cams, keys, grid, n),
                                  _brute_force(gt, cams, keys, grid, n))


def test_sweep_without_labelled_classes_is_all_background():
    gt = np.array([[0, 1, 255]], dtype=np.uint8)
    cams = np.zeros((0, 1, 3), dtype=np.float32)
    sweep = sweep_confusions(gt, cams, np.zeros(0, dtype=np.int64), [0.1, 0.2], 2)
    assert sweep.tolist() == [[[1, 0], [1, 0]]] * 2


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), num_keys=st.integers(1, 4),
       thresholds=st.lists(st.floats(0, 1, width=32), min_size=1, max_size=8))
def test_sweep_property(seed, num_keys, thresholds):
    rng = np.random.default_rng(seed)
    n = 5
    keys = np.sort(rng.choice(n - 1, size=num_keys, replace=False))
    cams = (rng.integers(0, 11, size=(num_keys, 4, 5)) / 10).astype(np.float32)
    gt = rng.choice([0, 1, 2, 3, 4, 255], size=(4, 5)).astype(np.uint8)
    np.testing.assert_array_equal(sweep_confusions(gt, cams, keys, thresholds, n),
                                  _brute_force(gt, cams, keys, thresholds, n))


def test_percent_and_threshold_grid():
    from vwe.errors import VweError
    from vwe.metrics import percent, threshold_grid

    assert percent(0.6041) == "60.4" and percent(None) == "-" and percent(float("nan")) == "-"
    assert threshold_grid(0.1, 0.4, 0.15, "eval_labels").tolist() == [0.1, 0.25, 0.4]
    assert threshold_grid(0.0, 0.6, 0.01, "eval_cam").shape == (61,)
    with pytest.raises(VweError, match="eval_cam sweep needs"):
        threshold_grid(0.5, 0.2, 0.1, "eval_cam")


def test_part_counts_and_recall_by_hand():
    from vwe.metrics import part_counts, part_recall_report

    gt = np.array([[1, 1, 1, 2], [1, 1, 0, 2], [255, 2, 2, 0]])
    parts = np.array([[2, 2, 1, 1], [1, 1, 0, 2], [255, 1, 1, 0]])
    pred = np.array([[1, 0, 0, 2], [1, 0, 0, 0], [0, 2, 0, 1]])
    counts = part_counts(gt, pred, parts, 3)
    # class 1: mark pixels (0,0) hit, (0,1) missed; body (0,2) missed, (1,0) hit, (1,1) missed
    # class 2: mark (1,3) missed; body (0,3) hit, (2,1) hit, (2,2) missed
    assert counts[0].tolist() == [[0, 1, 0], [0, 2, 1]]
    assert counts[1].tolist() == [[0, 1, 2], [0, 3, 3]]
    report = part_recall_report(counts, ["bg", "a", "b"])
    assert report["mark_recall"] == [None, 0.5, 0.0]
    assert report["body_recall"][1:] == [pytest.approx(1 / 3), pytest.approx(2 / 3)]
    assert report["mean_mark_recall"] == pytest.approx(0.25)
    assert report["mean_body_recall"] == pytest.approx(0.5)
