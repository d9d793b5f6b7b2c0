"""The authors' augmentation (docs/method.md#data-augmentation) with an explicit rng."""

import random

import numpy as np
import pytest
from PIL import Image

from vwe.data.transforms import (
    TrainTransform,
    hflip,
    normalize,
    random_crop,
    random_flip,
    rescale,
    resize_long,
    to_chw,
)


def image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


class FixedRandom(random.Random):
    """randint returns a chosen long side (to test the size arithmetic alone)."""

    def __init__(self, value):
        super().__init__(0)
        self.value = value

    def randint(self, a, b):
        assert a <= self.value <= b
        return self.value


@pytest.mark.parametrize(("shape", "long_side", "expected"), [
    ((375, 500), 250, (188, 250)),  # 187.5 rounds half to even: 188
    ((333, 500), 250, (166, 250)),  # 166.5 rounds half to even: 166
    ((500, 333), 250, (250, 166)),  # portrait: the scale divides by the height
    ((300, 300), 150, (150, 150)),
    ((101, 99), 50, (50, 49)),      # 99·50/101 = 49.0099
])
def test_resize_long_sizes(shape, long_side, expected):
    out = resize_long(image(*shape), 10, 1000, FixedRandom(long_side))
    assert out.shape == (*expected, 3) and out.dtype == np.uint8


def test_resize_long_uses_pil_bicubic_and_an_inclusive_range():
    img = image(40, 60)
    out = resize_long(img, 30, 30, random.Random(0))
    reference = np.asarray(Image.fromarray(img).resize((30, 20), Image.Resampling.BICUBIC))
    assert np.array_equal(out, reference)
    sides = {max(resize_long(img, 30, 32, random.Random(s)).shape[:2]) for s in range(60)}
    assert sides == {30, 31, 32}


def test_rescale_keeps_the_image_at_scale_one_and_rounds_half_even():
    img = image(33, 45)
    assert rescale(img, 1.0) is img
    assert rescale(img, 0.5).shape == (16, 22, 3)  # 16.5 → 16, 22.5 → 22
    assert rescale(img, 1.5).shape == (50, 68, 3)  # 49.5 → 50, 67.5 → 68


def test_normalize_by_hand():
    img = np.array([[[255, 0, 128]]], dtype=np.uint8)
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    out = normalize(img)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-6)


def test_hflip_and_flip_draw():
    img = np.arange(6).reshape(1, 3, 2)
    assert hflip(img)[0, :, 0].tolist() == [4, 2, 0]
    for seed in range(20):
        bit = random.Random(seed).getrandbits(1)
        out = random_flip(img, 0.5, random.Random(seed))
        assert np.array_equal(out, img[:, ::-1] if bit else img)
    assert random_flip(img, 0.0, random.Random(0)) is img


def brute_force_crop(img, size, cont, offset, pad):
    """Container pixel (y, x) shows image pixel (y − cont + offset) when that lies inside."""
    out = np.full((size, size, img.shape[2]), pad, dtype=img.dtype)
    for y in range(size):
        for x in range(size):
            sy, sx = y - cont[0] + offset[0], x - cont[1] + offset[1]
            inside_c = cont[0] <= y < cont[0] + min(size, img.shape[0]) and \
                cont[1] <= x < cont[1] + min(size, img.shape[1])
            if inside_c and 0 <= sy < img.shape[0] and 0 <= sx < img.shape[1]:
                out[y, x] = img[sy, sx]
    return out


@pytest.mark.parametrize(("height", "width"), [(3, 5), (6, 2), (4, 4), (7, 9), (2, 2)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_crop_placement_and_padding(height, width, seed):
    size = 4
    img = image(height, width, seed).astype(np.float32)
    draws = random.Random(seed)  # x before y; window when longer, placement otherwise
    x_draw = draws.randrange(abs(width - size) + 1)
    y_draw = draws.randrange(abs(height - size) + 1)
    cont = (0 if height > size else y_draw, 0 if width > size else x_draw)
    offset = (y_draw if height > size else 0, x_draw if width > size else 0)
    rng = random.Random(seed)
    out = random_crop(img, size, rng, pad_value=-7.0)
    assert np.array_equal(out, brute_force_crop(img, size, cont, offset, -7.0))
    assert rng.getstate() == draws.getstate()  # exactly two draws, also when a side equals size


def test_small_image_lands_at_several_offsets():
    img = np.ones((2, 2, 1), dtype=np.float32)
    corners = {tuple(np.argwhere(random_crop(img, 5, random.Random(s))[..., 0] == 1)[0])
               for s in range(50)}
    assert len(corners) > 5


def test_to_chw():
    img = np.arange(24).reshape(2, 3, 4)
    assert np.array_equal(to_chw(img)[1], img[..., 1]) and to_chw(img).flags.c_contiguous


def test_train_transform_equals_the_steps_by_hand():
    img = image(37, 53, seed=3)
    transform = TrainTransform(crop_size=32, resize_long=(20, 60), flip_prob=0.5)
    for seed in range(5):
        rng = random.Random(seed)
        target = rng.randint(20, 60)
        scale = target / 53
        size = (int(np.round(53 * scale)), int(np.round(37 * scale)))
        resized = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BICUBIC))
        norm = ((resized / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225])
        norm = norm.astype(np.float32)
        if rng.getrandbits(1):
            norm = norm[:, ::-1]
        expected = random_crop(np.ascontiguousarray(norm), 32, rng).transpose(2, 0, 1)
        out = transform(img, random.Random(seed))
        assert out.shape == (3, 32, 32) and out.dtype == np.float32
        assert np.array_equal(out, expected)


def test_train_transform_same_seed_same_output_and_from_config():
    class Cfg:
        crop_size = 24
        resize_long = [16, 48]
        flip_prob = 0.5

    transform = TrainTransform.from_config(Cfg())
    assert transform == TrainTransform(24, (16, 48), 0.5)
    img = image(30, 40)
    first = transform(img, random.Random(11))
    assert np.array_equal(first, transform(img, random.Random(11)))
    others = [transform(img, random.Random(s)) for s in range(12, 16)]
    assert any(not np.array_equal(first, o) for o in others)
