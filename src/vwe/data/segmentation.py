"""Segmentation training data: label folders, the DeepLab augmentation, the training dataset.

Labels are PNGs `<label_dir>/<name>.png` holding class ids 0..C (background 0) and 255 for "ignore"
(docs/segmentation.md#pseudo-label-training): pseudo labels, or the ground truth for a fully
supervised run. Every label is checked once before training (its size against the image's, its ids
against the class range), so a bad file stops the run before anything is written. The augmentation
follows docs/segmentation.md#augmentation (KZ): discrete random scale, pad with the mean colour /
255, random crop, flip; every draw comes from the `random.Random` passed in, so a sample's
augmentation is a function of its seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from vwe.data.io import read_image, read_label_png
from vwe.data.transforms import resize, to_chw
from vwe.data.voc import EpochSeededDataset, VocLayout, sample_rng
from vwe.errors import VweError

SHOW_NAMES = 5  # names listed in an error about many files


def normalize_pixels(image: np.ndarray, mean: Sequence[float], std: Sequence[float],
                     bgr: bool) -> np.ndarray:
    """(pixels_0_255[..., order] − mean) / std as float32 HWC, as the init expects
    (docs/segmentation.md#initialisation)."""
    pixels = image[..., ::-1] if bgr else image
    out = (pixels.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(out)


def label_path(label_dir: str | Path, name: str) -> Path:
    return Path(label_dir) / f"{name}.png"


def _size_of(path: Path) -> tuple[int, int]:
    """(H, W) from the file header, without decoding the pixels."""
    with Image.open(path) as image:
        width, height = image.size
    return height, width


def label_problem(image_file: Path, label_file: Path, num_classes: int,
                  ignore_index: int = 255) -> str | None:
    """What is wrong with one label file (a one-line message naming it and the fix), or None."""
    if not label_file.is_file():
        return None  # missing files are reported together by `check_label_folder`
    try:
        label = read_label_png(label_file)
        image_size = _size_of(image_file)
    except VweError as err:
        return str(err)
    except OSError as err:
        return f"image {image_file} cannot be read ({err}); restore it"
    if label.shape != image_size:
        return (f"label {label_file} is {label.shape[0]}x{label.shape[1]} but its image "
                f"{image_file} is {image_size[0]}x{image_size[1]}; labels must have the image's "
                "size: remake the labels for this dataset")
    bad = np.unique(label[(label >= num_classes) & (label != ignore_index)])
    if bad.size:
        return (f"label {label_file} holds id {int(bad[0])}, outside 0..{num_classes - 1} and "
                f"{ignore_index} (ignore); remake the labels for this dataset's "
                f"{num_classes - 1} classes")
    return None


class _LabelCheck(Dataset):
    """One `label_problem` per image, so a DataLoader can check a folder with workers."""

    def __init__(self, layout: VocLayout, names: list[str], label_dir: Path, num_classes: int,
                 ignore_index: int) -> None:
        self.layout, self.names, self.label_dir = layout, names, label_dir
        self.num_classes, self.ignore_index = num_classes, ignore_index

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> str:
        name = self.names[index]
        problem = label_problem(self.layout.image_path(name), label_path(self.label_dir, name),
                                self.num_classes, self.ignore_index)
        return problem or ""


def check_label_folder(layout: VocLayout, names: list[str], label_dir: str | Path,
                       num_classes: int, ignore_index: int = 255, num_workers: int = 0,
                       key: str = "seg.label_dir") -> None:
    """Every listed image has a label of its size with ids in range; else one VweError."""
    label_dir = Path(label_dir)
    if not label_dir.is_dir() or not any(label_dir.glob("*.png")):
        raise VweError(f"label folder {label_dir} holds no PNG label; make the pseudo labels "
                       f"first (`vwe pseudo-labels`) or point {key} at a folder of label PNGs")
    missing = [n for n in names if not label_path(label_dir, n).is_file()]
    if missing:
        raise VweError(f"{len(missing)} of {len(names)} images have no label in {label_dir} "
                       f"(e.g. {', '.join(missing[:SHOW_NAMES])}); make labels for the whole "
                       f"split or choose the split that matches {key}")
    checks = _LabelCheck(layout, names, label_dir, num_classes, ignore_index)
    loader = DataLoader(checks, batch_size=None, num_workers=num_workers)
    for problem in loader:
        if problem:
            raise VweError(problem)


@dataclass(frozen=True)
class SegTrainTransform:
    """Scale from a discrete set → normalise → pad (mean colour, 255) → crop → flip
    (docs/segmentation.md#augmentation)."""

    crop_size: int = 321
    scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)
    flip_prob: float = 0.5
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    bgr: bool = False
    ignore_index: int = 255

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: random.Random
                 ) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (H, W, 3) image + (H, W) ids → float32 (3, S, S) and int64 (S, S)."""
        scale = rng.choice(self.scales)  # uniform over the discrete set
        height, width = label.shape
        size = (int(height * scale), int(width * scale))  # ⌊h·s⌋ × ⌊w·s⌋
        image = resize(image, size, "bilinear")
        label = resize(label, size, "nearest")
        pixels = normalize_pixels(image, self.mean, self.std, self.bgr)
        pixels, label = self._pad(pixels, label)
        top = rng.randint(0, label.shape[0] - self.crop_size)
        left = rng.randint(0, label.shape[1] - self.crop_size)
        window = (slice(top, top + self.crop_size), slice(left, left + self.crop_size))
        pixels, label = pixels[window], label[window]
        if rng.random() < self.flip_prob:
            pixels, label = pixels[:, ::-1], label[:, ::-1]
        return to_chw(pixels), np.ascontiguousarray(label, dtype=np.int64)

    def _pad(self, pixels: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pad bottom/right to at least the crop: 0 after normalisation (the mean) and 255."""
        pad_h = max(self.crop_size - label.shape[0], 0)
        pad_w = max(self.crop_size - label.shape[1], 0)
        if pad_h == 0 and pad_w == 0:
            return pixels, label
        pixels = np.pad(pixels, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=0.0)
        label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=self.ignore_index)
        return pixels, label


class SegTrainDataset(EpochSeededDataset):
    """Images with label PNGs under `SegTrainTransform`; call `set_epoch` before each epoch."""

    def __init__(self, layout: VocLayout, names: list[str], label_dir: str | Path,
                 transform: SegTrainTransform, seed: int = 0) -> None:
        self.layout, self.names, self.label_dir = layout, names, Path(label_dir)
        self.transform, self.seed, self.epoch = transform, seed, 0

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = self.names[index]
        image = read_image(self.layout.image_path(name))
        label = read_label_png(label_path(self.label_dir, name))
        pixels, ids = self.transform(image, label, sample_rng(self.seed, self.epoch, index))
        return {"image": torch.from_numpy(pixels), "label": torch.from_numpy(ids), "name": name}
