"""IR labels: combination rule by hand and two CRF passes on flat-colour squares
(docs/refinement.md#ir-labels)."""

import numpy as np
import pytest

from vwe.refine import ir_label
from vwe.refine.ir_label import combine_confident


def test_combination_rule_by_hand():
    fg = np.array([[0, 0, 5, 5, 3]])
    bg = np.array([[0, 5, 5, 0, 5]])
    # fg 0 & bg 0 → 0; fg 0 & bg fg → 255; fg class wins even where bg says 0 or another class
    np.testing.assert_array_equal(combine_confident(fg, bg), [[0, 255, 5, 5, 3]])


def test_ir_label_on_flat_squares():
    image = np.zeros((32, 40, 3), np.uint8)
    image[4:16, 4:16] = 255  # confident object: CAM 0.9 > fg 0.30
    image[18:30, 22:36] = 128  # uncertain region: bg 0.05 < CAM 0.15 < fg 0.30
    cams = np.zeros((2, 32, 40), np.float32)
    cams[0, 4:16, 4:16] = 0.9
    cams[0, 18:30, 22:36] = 0.15
    cams[1, 18:30, 22:36] = 0.1
    expected = np.zeros((32, 40), np.uint8)
    expected[4:16, 4:16] = 5  # class index 4 → label 5
    expected[18:30, 22:36] = 255
    out = ir_label(image, cams, np.array([4, 11]))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_ir_label_edge_cases():
    image = np.zeros((8, 8, 3), np.uint8)
    np.testing.assert_array_equal(ir_label(image, np.zeros((0, 8, 8)), np.array([])), 0)
    with pytest.raises(ValueError):
        ir_label(image, np.zeros((1, 8, 8)), np.array([0]), fg_thres=0.05, bg_thres=0.3)
    with pytest.raises(ValueError):
        ir_label(image, np.zeros((1, 7, 8)), np.array([0]))
    with pytest.raises(ValueError):
        ir_label(image, np.zeros((1, 8, 8)), np.array([0, 1]))
