"""The generated classification task that stands in for ImageNet (docs/synthetic.md#pretraining).

Offline there are no ImageNet weights, yet the paper's recipe (frozen BN statistics, frozen stem,
layers 1-2 detached) assumes a backbone whose features already mean something. `vwe pretrain`
trains one here: single-object images whose class is a (shape, texture, hue) triple. The
primitives differ from the segmentation dataset's families and marks, so no segmentation class
is seen during pretraining; what transfers is what ImageNet transfers: edges, textures, colour.
Images are drawn on the fly from (seed, stream, index), so the task is deterministic, needs no
disk and never repeats an image between epochs.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from vwe.data.transforms import normalize, to_chw

TASK_VERSION = 1  # raise when the images change: every cached backbone is then retrained
SHAPES = ("triangle", "star", "crescent", "semicircle", "arrow", "lshape", "trapezoid", "frame")
TEXTURES = ("zigzag", "plaid", "hatch", "solid", "noise", "spots", "squares", "spokes")
HUES = 6
TRAIN_STREAM, VAL_STREAM = 0, 1


@dataclass(frozen=True)
class TaskClass:
    """One class of the task: a shape, a texture and a hue bin."""

    shape: str
    texture: str
    hue: int


def task_classes(num_classes: int, seed: int) -> list[TaskClass]:
    """`num_classes` distinct (shape, texture, hue) triples, chosen by `seed`."""
    every = [TaskClass(s, t, h) for s in SHAPES for t in TEXTURES for h in range(HUES)]
    if not 2 <= num_classes <= len(every):
        raise ValueError(f"the task has 2..{len(every)} classes, asked for {num_classes}")
    order = np.random.default_rng([seed, 7]).permutation(len(every))
    return [every[i] for i in sorted(order[:num_classes])]


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    radius = np.sqrt(u * u + v * v)
    if shape == "triangle":
        return (v <= 0.8) & (au <= (v + 0.9) * 0.55)
    if shape == "star":
        angle = np.arctan2(v, u)
        return radius <= 0.45 + 0.45 * np.abs(np.cos(2.5 * angle))
    if shape == "crescent":
        return (radius <= 0.9) & ((u - 0.45) ** 2 + v * v > 0.6 ** 2)
    if shape == "semicircle":
        return (radius <= 0.95) & (v >= -0.1)
    if shape == "arrow":
        return ((au <= 0.22) & (v >= -0.9) & (v <= 0.15)) | ((v > 0.15) & (v <= 0.95)
                                                            & (au <= 0.95 - v))
    if shape == "lshape":
        return ((u >= -0.8) & (u <= -0.25) & (av <= 0.9)) | ((au <= 0.8) & (v >= 0.35)
                                                             & (v <= 0.9))
    if shape == "trapezoid":
        return (av <= 0.6) & (au <= 0.45 + 0.4 * (v + 0.6) / 1.2)
    ring = np.maximum(np.maximum(au, av), (au + av) / 1.35)  # frame: an octagonal ring
    return (ring <= 0.92) & (ring >= 0.5)


def _texture(texture: str, u: np.ndarray, v: np.ndarray, freq: float,
             rng: np.random.Generator) -> np.ndarray:
    """A weight in [0, 1] between the class's two colours, in object coordinates."""
    if texture == "zigzag":
        return (np.abs(((v * freq + np.abs((u * freq) % 2 - 1)) % 1) - 0.5) < 0.25) * 1.0
    if texture == "plaid":
        return 0.5 * (np.abs((u * freq) % 1 - 0.5) < 0.15) + 0.5 * (np.abs((v * freq) % 1 - 0.5)
                                                                      < 0.15)
    if texture == "hatch":
        return (((u - v) * freq) % 1 < 0.3) * 1.0
    if texture == "solid":
        return np.clip(0.15 + 0.2 * v, 0.0, 1.0)
    if texture == "noise":
        cells = rng.random((6, 6))
        iu = np.clip(((u + 1) * 2.5).astype(np.int64), 0, 5)
        iv = np.clip(((v + 1) * 2.5).astype(np.int64), 0, 5)
        return cells[iv, iu]
    if texture == "spots":
        row = np.floor(v * freq)
        du = (u * freq + 0.5 * (row % 2)) % 1 - 0.5
        dv = (v * freq) % 1 - 0.5
        return (du * du + dv * dv < 0.06) * 1.0
    if texture == "squares":
        return (np.maximum(np.abs(u), np.abs(v)) * freq % 1 < 0.5) * 1.0
    angle = np.arctan2(v, u)
    return ((angle * 6 / math.pi) % 1 < 0.5) * 1.0  # spokes


def _rgb(hue: float, sat: float, val: float) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(hue % 1.0, sat, val), dtype=np.float32) * 255


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """A muted two-colour background: smooth noise, a gradient or faint stripes."""
    first = _rgb(rng.random(), 0.1 + 0.25 * rng.random(), 0.3 + 0.5 * rng.random())
    second = _rgb(rng.random(), 0.1 + 0.25 * rng.random(), 0.2 + 0.5 * rng.random())
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) / side
    kind = int(rng.integers(3))
    if kind == 0:
        cells = int(rng.integers(3, 9))
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        iy, ix = (ys * cells).astype(np.int64), (xs * cells).astype(np.int64)
        weight = grid[iy, ix]
    elif kind == 1:
        weight = ys * rng.random() + xs * (1 - rng.random())
    else:
        weight = 0.3 * ((xs * rng.uniform(3, 8) + ys * rng.uniform(-3, 3)) % 1 < 0.5)
    return first + (second - first) * np.clip(weight, 0, 1)[..., None]


def render_task_image(cls: TaskClass, side: int, rng: np.random.Generator) -> np.ndarray:
    """One (side, side, 3) uint8 image of class `cls`: a rotated, scaled object on clutter."""
    img = _background(rng, side)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    for _ in range(int(rng.integers(0, 4))):  # grey blobs that belong to no class
        cy, cx, radius = rng.random() * side, rng.random() * side, (0.04 + 0.06 * rng.random())
        blob = (ys - cy) ** 2 + (xs - cx) ** 2 <= (radius * side) ** 2
        img[blob] = 60 + 120 * rng.random()
    half = side * rng.uniform(0.25, 0.45)
    cy, cx = side / 2 + rng.uniform(-0.2, 0.2) * side, side / 2 + rng.uniform(-0.2, 0.2) * side
    theta = rng.uniform(0, 2 * math.pi)
    dy, dx = (ys - cy) / half, (xs - cx) / half
    u = math.cos(theta) * dx + math.sin(theta) * dy
    v = -math.sin(theta) * dx + math.cos(theta) * dy
    mask = _shape_mask(cls.shape, u, v)
    hue = (cls.hue + rng.uniform(-0.2, 0.2)) / HUES
    light = _rgb(hue, rng.uniform(0.55, 0.85), rng.uniform(0.8, 1.0))
    dark = _rgb(hue + 0.04, rng.uniform(0.5, 0.8), rng.uniform(0.35, 0.55))
    weight = _texture(cls.texture, u, v, rng.uniform(2.0, 3.5), rng)
    img[mask] = (light + (dark - light) * weight[..., None].astype(np.float32))[mask]
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


class PretrainTask(Dataset):
    """`length` images per epoch of the task; epoch e draws images e·length … (e+1)·length − 1
    of its stream, so every epoch sees new images (call `set_epoch`, as the training loop does)."""

    def __init__(self, classes: list[TaskClass], side: int, length: int, seed: int,
                 stream: int = TRAIN_STREAM) -> None:
        self.classes, self.side, self.length = classes, side, length
        self.seed, self.stream, self.epoch = seed, stream, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        number = self.epoch * self.length + index
        rng = np.random.default_rng([self.seed, self.stream, number])
        label = int(rng.integers(len(self.classes)))
        image = render_task_image(self.classes[label], self.side, rng)
        return {"image": torch.from_numpy(to_chw(normalize(image))), "label": label,
                "name": f"task-{self.stream}-{number}"}
