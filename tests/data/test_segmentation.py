"""DeepLab training data: the augmentation of docs/segmentation.md#augmentation and the label-folder
checks."""

import random

import numpy as np
import pytest

from vwe.data.io import save_label_png
from vwe.data.segmentation import (
    SegTrainTransform,
    check_label_folder,
    label_problem,
    normalize_pixels,
)
from vwe.data.voc import VocLayout
from vwe.errors import VweError


def coded_pair(height=40, width=52, seed=0):
    """A label map and an image whose red channel is 20 × the label (so pairs can be checked)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 6, (height, width)).astype(np.uint8)
    image = np.stack([label * 20, np.full_like(label, 7), np.full_like(label, 9)], axis=-1)
    return image.astype(np.uint8), label


def test_crop_keeps_image_and_label_aligned_and_pads_with_mean_and_ignore():
    image, label = coded_pair()
    transform = SegTrainTransform(crop_size=48, scales=(1.0,), flip_prob=0.5)
    flips = 0
    for seed in range(12):
        pixels, ids = transform(image, label, random.Random(seed))
        assert pixels.shape == (3, 48, 48) and pixels.dtype == np.float32
        assert ids.shape == (48, 48) and ids.dtype == np.int64
        valid = ids != 255
        np.testing.assert_array_equal(pixels[0][valid], ids[valid] * 20.0)
        assert (pixels[:, ~valid] == 0).all()  # mean colour after normalisation (mean 0 here)
        assert valid.sum() == 40 * 48  # height 40 < 48 is padded, width 52 is cropped
        assert (~valid[40:]).all()  # KZ pads at the bottom/right
        # a left-right mirror of the source shows up as a mirrored crop
        rows = [r for r in range(40) if ids[r].tolist() in _windows(label[r], 48)]
        flips += len(rows) < 40
    assert 0 < flips < 12


def _windows(row, size):
    return [row[i:i + size].tolist() for i in range(len(row) - size + 1)]


def test_scale_is_drawn_from_the_discrete_set_with_floor_sizes():
    image, label = coded_pair(41, 41)
    transform = SegTrainTransform(crop_size=32, scales=(0.5,), flip_prob=0.0)
    _, ids = transform(image, label, random.Random(3))
    assert (ids != 255).sum() == 20 * 20  # ⌊41 · 0.5⌋ = 20 per side, padded to 32
    multi = SegTrainTransform(crop_size=32, scales=(0.5, 1.0), flip_prob=0.0)
    counts = {int((multi(image, label, random.Random(seed))[1] != 255).sum())
              for seed in range(20)}
    assert counts == {20 * 20, 32 * 32}  # both scales drawn, nothing else
    a = multi(image, label, random.Random(5))
    b = multi(image, label, random.Random(5))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_normalisation_orders_channels_like_the_init():
    image = np.array([[[10, 20, 30]]], np.uint8)
    np.testing.assert_allclose(normalize_pixels(image, (1, 2, 3), (1, 2, 3), bgr=True),
                               [[[29.0, 9.0, 7.0 / 3.0]]])
    np.testing.assert_allclose(normalize_pixels(image, (0, 0, 0), (10, 10, 10), bgr=False),
                               [[[1.0, 2.0, 3.0]]])


@pytest.fixture()
def voc(tmp_path, fake_voc):
    root = fake_voc(tmp_path / "voc", {"a": ["cat"], "b": ["dog"]}, {"train": ["a", "b"]},
                    classes=["cat", "dog"])
    labels = tmp_path / "labels"
    labels.mkdir()
    for name in ("a", "b"):
        mask = np.zeros((10, 12), np.uint8)
        mask[2:4, 2:4] = 2
        mask[0] = 255
        save_label_png(labels / f"{name}.png", mask)
    return VocLayout(root, "SegmentationClass"), labels


def test_label_checks_accept_good_labels(voc):
    layout, labels = voc
    check_label_folder(layout, ["a", "b"], labels, num_classes=3)


def test_label_of_wrong_size_or_with_foreign_ids_is_named(voc):
    layout, labels = voc
    save_label_png(labels / "b.png", np.zeros((10, 11), np.uint8))
    problem = label_problem(layout.image_path("b"), labels / "b.png", 3)
    assert "b.png is 10x11" in problem and "10x12" in problem
    with pytest.raises(VweError, match="b.png is 10x11"):
        check_label_folder(layout, ["a", "b"], labels, num_classes=3)
    save_label_png(labels / "b.png", np.full((10, 12), 3, np.uint8))
    with pytest.raises(VweError, match="b.png holds id 3, outside 0..2"):
        check_label_folder(layout, ["a", "b"], labels, num_classes=3)


def test_empty_or_incomplete_label_folder(voc, tmp_path):
    layout, labels = voc
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VweError, match="holds no PNG label.*seg.label_dir"):
        check_label_folder(layout, ["a", "b"], empty, 3)
    with pytest.raises(VweError, match="holds no PNG label"):
        check_label_folder(layout, ["a", "b"], tmp_path / "absent", 3)
    (labels / "a.png").unlink()
    with pytest.raises(VweError, match=r"1 of 2 images have no label .*\(e\.g\. a\)"):
        check_label_folder(layout, ["a", "b"], labels, 3)
