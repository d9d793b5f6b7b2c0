"""The long-side factor that brings an image into the range a network trained at, and where a
checkpoint says that range (docs/pipeline.md#trained-scale)."""

import pytest

from vwe.config import load_config, to_yaml
from vwe.inference.trained_scale import at_trained_scale, long_side_factor, trained_long_side


@pytest.mark.parametrize("size, factor", [
    ((300, 451), 1.0),            # inside [240, 480]: untouched
    ((2682, 4032), 480 / 4032),   # a phone photo: down to the top of the range
    ((100, 60), 240 / 100),       # a thumbnail: up to the bottom
    ((480, 240), 1.0),            # both ends belong to the range
])
def test_long_side_factor_by_hand(size, factor):
    assert long_side_factor(size, (240, 480)) == pytest.approx(factor)
    assert at_trained_scale([1.0, 0.5], size, (240, 480)) == pytest.approx([factor, factor / 2])


def test_no_range_means_every_image_at_its_own_size():
    assert long_side_factor((4000, 3000), None) == 1.0
    assert at_trained_scale([1.0, 2.0], (4000, 3000), None) == [1.0, 2.0]


def test_the_range_comes_from_the_checkpoint():
    assert trained_long_side({"trained_long_side": [160, 480]}) == (160, 480)
    cfg = load_config(None, ["train_cam.resize_long=[200, 300]"])
    older_cam = {"arch": {"name": "cam_net"}, "config": to_yaml(cfg)}  # before the key existed
    assert trained_long_side(older_cam) == (200, 300)
    assert trained_long_side({"arch": {"name": "deeplab"}, "config": to_yaml(cfg)}) is None
    assert trained_long_side({"model": {}}) is None  # imported weights say nothing
