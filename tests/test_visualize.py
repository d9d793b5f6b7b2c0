"""CAM pictures: colour map ends, blending, palette colours, the saved strip."""

import numpy as np
from PIL import Image

from vwe.data.io import voc_palette
from vwe.visualize import (
    TITLE_HEIGHT,
    cam_overlay,
    jet,
    label_to_color,
    save_cam_panel,
)


def test_jet_ends_and_middle():
    np.testing.assert_allclose(jet(np.array([0.0, 0.5, 1.0])),
                               [[0, 0, 0.5], [0.5, 1, 0.5], [0.5, 0, 0]])


def test_overlay_shape_dtype_and_zero_cam_is_image_half_dark_blue():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    out = cam_overlay(image, np.zeros((5, 7), dtype=np.float32))
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    # jet(0) = (0, 0, 0.5): red/green halve, blue gets half of 127.5 added.
    np.testing.assert_array_equal(out[..., :2], np.rint(image[..., :2] * 0.5))
    np.testing.assert_array_equal(out[..., 2], np.rint(image[..., 2] * 0.5 + 63.75))
    full = cam_overlay(np.zeros((1, 1, 3), np.uint8), np.ones((1, 1)), alpha=1.0)
    assert full.tolist() == [[[128, 0, 0]]]  # jet(1) = dark red


def test_voc_palette_and_label_colours():
    palette = voc_palette()
    assert palette[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert palette[15].tolist() == [192, 128, 128]  # VOC person
    assert palette[255].tolist() == [224, 224, 192]  # VOC ignore border
    label = np.array([[0, 1], [255, 15]], dtype=np.uint8)
    colours = label_to_color(label, palette)
    assert colours.shape == (2, 2, 3) and colours[1, 1].tolist() == [192, 128, 128]


def test_save_cam_panel_strip(tmp_path):
    image = np.full((6, 8, 3), 200, dtype=np.uint8)
    gt = np.zeros((6, 8), dtype=np.uint8)
    gt[2:4, 2:6] = 3
    cams = np.random.default_rng(1).random((2, 6, 8)).astype(np.float32)
    names = ["a", "b", "c", "d"]
    path = save_cam_panel(tmp_path / "sub" / "x.png", image, gt, cams, np.array([0, 2]), names)
    strip = np.asarray(Image.open(path).convert("RGB"))
    assert strip.shape == (6 + TITLE_HEIGHT, 8 * 4, 3)  # image | GT | 2 CAMs
    np.testing.assert_array_equal(strip[TITLE_HEIGHT:, :8], image)
    np.testing.assert_array_equal(strip[TITLE_HEIGHT:, 8:16], label_to_color(gt))
    np.testing.assert_array_equal(strip[TITLE_HEIGHT:, 24:], cam_overlay(image, cams[1]))
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]  # no temporary file left


def test_the_legend_grows_with_the_photo_so_it_stays_readable():
    """Beside a 2682-pixel-high photo the legend is 5x its small size (pixel by pixel); beside
    a small image it keeps LEGEND_WIDTH; the overlay keeps the photo's height."""
    import numpy as np

    from vwe.visualize import LEGEND_WIDTH, legend_strip, prediction_overlay

    for height, zoom in ((300, 1), (2682, 5)):
        image = np.zeros((height, 40, 3), np.uint8)
        label = np.zeros((height, 40), np.uint8)
        label[:5, :5] = 1
        overlay = prediction_overlay(image, label, ["background", "cat"])
        assert overlay.shape == (height, 40 + LEGEND_WIDTH * zoom, 3)
    small = legend_strip([0, 1], ["background", "cat"], 40)
    big = legend_strip([0, 1], ["background", "cat"], 200, zoom=5)
    np.testing.assert_array_equal(big[::5, ::5][:40], small)
