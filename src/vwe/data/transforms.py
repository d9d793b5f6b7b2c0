"""The authors' CAM-training augmentation (docs/method.md#data-augmentation), with an explicit rng.

Every random draw goes through the `random.Random` passed in, in the authors' order (long side,
flip bit, crop x, crop y), so a sample's augmentation is a pure function of its rng's seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST,
             "bilinear": Image.Resampling.BILINEAR}


def resize(img: np.ndarray, size: tuple[int, int], resample: str = "bicubic") -> np.ndarray:
    """Resize a uint8 HW or HWC array to (height, width) with PIL; same size returns `img`."""
    height, width = size
    if (height, width) == img.shape[:2]:
        return img
    resized = Image.fromarray(img).resize((width, height), _RESAMPLE[resample])
    return np.asarray(resized)


def rescale(img: np.ndarray, scale: float, resample: str = "bicubic") -> np.ndarray:
    """Scale by `scale` to (round(H·s), round(W·s)), numpy half-to-even rounding (IRNet's)."""
    height, width = img.shape[:2]
    size = (max(1, int(np.round(height * scale))), max(1, int(np.round(width * scale))))
    return resize(img, size, resample)


def resize_long(img: np.ndarray, low: int, high: int, rng: random.Random) -> np.ndarray:
    """Rescale so the long side is L = randint(low, high) (inclusive); w == h divides by w."""
    target_long = rng.randint(low, high)
    height, width = img.shape[:2]
    scale = target_long / height if width < height else target_long / width
    return rescale(img, scale)


def normalize(img: np.ndarray) -> np.ndarray:
    """(x/255 − mean)/std per RGB channel, computed in float64 and stored as float32 (IRNet)."""
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float64)
    std = np.asarray(IMAGENET_STD, dtype=np.float64)
    return ((np.asarray(img) / 255.0 - mean) / std).astype(np.float32)


def hflip(img: np.ndarray) -> np.ndarray:
    """Mirror left-right (a contiguous copy)."""
    return np.ascontiguousarray(img[:, ::-1])


def random_flip(img: np.ndarray, prob: float, rng: random.Random) -> np.ndarray:
    """Flip with probability `prob`; p = 0.5 draws one bit (`getrandbits(1)`) as the authors do."""
    if prob <= 0:
        return img
    flip = bool(rng.getrandbits(1)) if prob == 0.5 else rng.random() < prob
    return hflip(img) if flip else img


def _crop_axis(length: int, size: int, rng: random.Random) -> tuple[int, int]:
    """(container offset, image offset) along one axis: random window or random placement."""
    space = length - size
    if space > 0:
        return 0, rng.randrange(space + 1)
    return rng.randrange(-space + 1), 0


def random_crop(img: np.ndarray, size: int, rng: random.Random,
                pad_value: float = 0.0) -> np.ndarray:
    """Crop a size×size window into a container filled with `pad_value` (x drawn before y).

    An axis longer than `size` gets a random window; a shorter one is pasted whole at a random
    offset (IRNet's `random_crop`, docs/refinement.md#image-handling).
    """
    height, width = img.shape[:2]
    cont_left, img_left = _crop_axis(width, size, rng)
    cont_top, img_top = _crop_axis(height, size, rng)
    crop_h, crop_w = min(size, height), min(size, width)
    container = np.full((size, size) + img.shape[2:], pad_value, dtype=img.dtype)
    container[cont_top:cont_top + crop_h, cont_left:cont_left + crop_w] = \
        img[img_top:img_top + crop_h, img_left:img_left + crop_w]
    return container


def to_chw(img: np.ndarray) -> np.ndarray:
    """HWC → CHW, contiguous."""
    return np.ascontiguousarray(img.transpose(2, 0, 1))


@dataclass(frozen=True)
class TrainTransform:
    """resize_long → normalise → flip → crop → CHW, the authors' order
    (docs/method.md#data-augmentation)."""

    crop_size: int = 512
    resize_long: tuple[int, int] | None = (320, 640)  # None: keep the image's size
    flip_prob: float = 0.5

    @classmethod
    def from_config(cls, cfg: Any) -> TrainTransform:
        """Build from any object with crop_size, resize_long and flip_prob (TrainCamConfig)."""
        if isinstance(cfg, TrainTransform):
            return cfg
        long_range: Sequence[int] | None = cfg.resize_long
        return cls(crop_size=int(cfg.crop_size),
                   resize_long=tuple(long_range) if long_range else None,  # type: ignore[arg-type]
                   flip_prob=float(cfg.flip_prob))

    def __call__(self, img: np.ndarray, rng: random.Random) -> np.ndarray:
        """Augment one uint8 HWC RGB image into a float32 CHW array."""
        if self.resize_long is not None:
            img = resize_long(img, self.resize_long[0], self.resize_long[1], rng)
        out = normalize(img)
        out = random_flip(out, self.flip_prob, rng)
        out = random_crop(out, self.crop_size, rng, pad_value=0.0)
        return to_chw(out)
