"""IRNet's training and mean-shift data: images with their IR labels
(docs/refinement.md#training-targets, docs/refinement.md#displacement-mean).

Training samples: a uniform random scale in [lo, hi) (bicubic image, nearest label), normalise, a
random horizontal flip and a random crop (image padded with 0, label with 255), applied alike to
image and label; the label is then reduced ×0.25 by nearest neighbour, i.e. pixel (4i+2, 4j+2)
(docs/refinement.md#image-handling). Every draw comes from the per-sample rng of (seed, epoch,
index), so a resumed or distributed run sees exactly the same samples.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vwe.data.io import read_image, read_label_png
from vwe.data.transforms import normalize, random_crop, random_flip, rescale, to_chw
from vwe.data.voc import IGNORE_ID, EpochSeededDataset, VocLayout, sample_rng
from vwe.errors import VweError

# the edge map's stride: labels are reduced ×0.25 (docs/refinement.md#training-targets)
LABEL_STRIDE = 4


def with_same_draws(rng: random.Random, fn: Callable[..., np.ndarray],
                    arrays: Sequence[np.ndarray], *args_per_array: Sequence[Any]
                    ) -> list[np.ndarray]:
    """Apply `fn(array, rng, *args)` to each array with the same random draws (image + label)."""
    state = rng.getstate()
    outs = []
    for index, array in enumerate(arrays):
        rng.setstate(state)
        outs.append(fn(array, rng, *(args[index] for args in args_per_array)))
    return outs


def reduce_label(label: np.ndarray, stride: int = LABEL_STRIDE) -> np.ndarray:
    """PIL-nearest ×(1/stride) of a crop whose side divides by stride: pixel (4i+2, 4j+2)."""
    return np.ascontiguousarray(label[stride // 2::stride, stride // 2::stride])


def affinity_sample(image: np.ndarray, label: np.ndarray, rng: random.Random, crop_size: int,
                    scale_range: Sequence[float], flip_prob: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """One augmented training pair: CHW float32 image, (crop/4, crop/4) uint8 label
    (docs/refinement.md#training-targets)."""
    low, high = scale_range
    scale = low + rng.random() * (high - low)  # imutils.random_scale
    image = normalize(rescale(image, scale, "bicubic"))
    label = rescale(label, scale, "nearest")
    image, label = with_same_draws(
        rng, lambda a, r: random_flip(a, flip_prob, r), (image, label))
    image, label = with_same_draws(
        rng, lambda a, r, pad: random_crop(a, crop_size, r, pad_value=pad), (image, label),
        (0.0, IGNORE_ID))
    return to_chw(image), reduce_label(label)


def top_left_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The normalised image pasted at (0, 0) of a zero size×size canvas (imutils.top_left_crop)."""
    canvas = np.zeros((size, size, *image.shape[2:]), dtype=image.dtype)
    height, width = min(size, image.shape[0]), min(size, image.shape[1])
    canvas[:height, :width] = image[:height, :width]
    return canvas


class AffinityDataset(EpochSeededDataset):
    """Images of a split with their IR labels (`<label_dir>/<name>.png`), augmented
    (docs/refinement.md#training-targets).

    Call `set_epoch` before each epoch's DataLoader iterator is made.
    """

    def __init__(self, layout: VocLayout, split: str, label_dir: str | Path, crop_size: int,
                 scale_range: Sequence[float], flip_prob: float = 0.5, seed: int = 0) -> None:
        self.layout = layout
        self.names = layout.read_split(split)
        self.label_dir = Path(label_dir)
        self.crop_size, self.scale_range, self.flip_prob = crop_size, tuple(scale_range), flip_prob
        self.seed, self.epoch = seed, 0
        missing = [n for n in self.names if not self.label_path(n).is_file()]
        if missing:
            raise VweError(f"IR label {self.label_path(missing[0])} not found ({len(missing)} of "
                           f"{len(self.names)} missing); run `vwe ir-labels` first (it resumes)")

    def label_path(self, name: str) -> Path:
        return self.label_dir / f"{name}.png"

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = self.names[index]
        image = read_image(self.layout.image_path(name))
        label = read_label_png(self.label_path(name))
        if label.shape != image.shape[:2]:
            raise VweError(f"IR label {self.label_path(name)} is {label.shape[0]}x"
                           f"{label.shape[1]} but its image is {image.shape[0]}x{image.shape[1]};"
                           " delete the ir_labels folder and rerun `vwe ir-labels`")
        rng = sample_rng(self.seed, self.epoch, index)
        chw, reduced = affinity_sample(image, label, rng, self.crop_size, self.scale_range,
                                       self.flip_prob)
        return {"image": torch.from_numpy(chw), "label": torch.from_numpy(reduced.astype(np.int64)),
                "name": name}


class TopLeftDataset(Dataset):
    """Normalised images in a top-left crop, for the displacement-mean pass
    (docs/refinement.md#displacement-mean)."""

    def __init__(self, layout: VocLayout, names: Sequence[str], crop_size: int) -> None:
        self.layout, self.names, self.crop_size = layout, list(names), crop_size

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = normalize(read_image(self.layout.image_path(self.names[index])))
        return torch.from_numpy(to_chw(top_left_crop(image, self.crop_size)))
