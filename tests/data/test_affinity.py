"""IRN training samples: image and label share every random draw; the ×0.25 label reduction is
PIL's nearest resize; the top-left crop pastes at (0, 0)."""

import random

import numpy as np
import pytest

from vwe.data.affinity import affinity_sample, reduce_label, top_left_crop
from vwe.data.transforms import IMAGENET_MEAN, IMAGENET_STD, rescale


def red_channel(chw: np.ndarray) -> np.ndarray:
    """Undo the normalisation of the red channel: back to 0..255."""
    return np.rint((chw[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255)


@pytest.mark.parametrize("crop", [32, 64])  # smaller and larger than the 40×52 image
@pytest.mark.parametrize("seed", range(4))
def test_image_and_label_get_the_same_flip_and_crop(crop, seed):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 9, (40, 52)).astype(np.uint8)
    image = np.zeros((40, 52, 3), np.uint8)
    image[..., 0] = label * 20 + 10  # the label is readable from the image
    chw, reduced = affinity_sample(image, label, random.Random(seed), crop, (1.0, 1.0), 0.5)
    assert chw.shape == (3, crop, crop) and reduced.shape == (crop // 4, crop // 4)
    red = red_channel(chw)[2::4, 2::4]  # the pixels (4i+2, 4j+2) the label keeps
    valid = reduced != 255
    assert valid.any()
    np.testing.assert_array_equal(red[valid], reduced[valid] * 20 + 10)
    np.testing.assert_allclose(chw[:, 2::4, 2::4][:, ~valid], 0.0)  # padding: 0 and 255


def test_scale_draw_resizes_both():
    image = np.zeros((40, 60, 3), np.uint8)
    label = np.zeros((40, 60), np.uint8)
    chw, reduced = affinity_sample(image, label, random.Random(0), 128, (0.5, 0.5), 0.0)
    # scaled to 20×30, pasted somewhere in the 128 canvas: 5×7 or 5×8 reduced pixels are real
    assert (reduced == 0).sum() in {5 * 7, 5 * 8, 6 * 7, 6 * 8}


def test_reduce_label_is_pil_nearest_quarter():
    label = np.random.default_rng(0).integers(0, 255, (64, 96)).astype(np.uint8)
    np.testing.assert_array_equal(reduce_label(label), rescale(label, 0.25, "nearest"))


def test_top_left_crop():
    image = np.arange(5 * 7 * 3, dtype=np.float32).reshape(5, 7, 3) + 1
    out = top_left_crop(image, 6)
    np.testing.assert_array_equal(out[:5, :6], image[:, :6])
    assert out[5:].sum() == 0 and out.shape == (6, 6, 3)
