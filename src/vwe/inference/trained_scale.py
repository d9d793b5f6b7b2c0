"""Inference at the scale the network was trained at (docs/pipeline.md#trained-scale).

A network learns objects at the sizes its training showed them. The CAM network trains on
images whose long side is drawn from `train_cam.resize_long`; DeepLab on the training images at
their own size times `train_seg.scales`. A photo far outside that range (a 4032×2682 phone photo
for a network trained at 240–400 px) shows it objects at sizes it never saw: the same cat is
background at 451×300 and face/flower blobs at full size. So inference brings an image whose
long side lies outside the trained range to the nearest end of it (every inference scale times
one factor), predicts, and resizes the maps back to the image. An image inside the range is
untouched, so datasets whose photos are what the network trained on (VOC, COCO, MSRC, the
generated data) give exactly the numbers they gave before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from vwe.data.io import image_size
from vwe.data.voc import VocLayout

LongSideRange = tuple[int, int]


def long_side_factor(size: Sequence[int], long_range: LongSideRange | None) -> float:
    """The factor that brings an (H, W) image's long side into `long_range` (1 inside it or
    when the range is unknown)."""
    if long_range is None:
        return 1.0
    low, high = long_range
    long_side = max(int(size[0]), int(size[1]))
    if long_side > high:
        return high / long_side
    if long_side < low:
        return low / long_side
    return 1.0


def at_trained_scale(scales: Sequence[float], size: Sequence[int],
                     long_range: LongSideRange | None) -> list[float]:
    """The inference scales for one image: each times its long-side factor."""
    factor = long_side_factor(size, long_range)
    return [float(scale) * factor for scale in scales] if factor != 1.0 else list(scales)


def trained_long_side(state: Mapping[str, Any]) -> LongSideRange | None:
    """The long-side range a checkpoint's network trained at: `trained_long_side` (train-cam and
    train-seg write it), else train_cam.resize_long from a CAM checkpoint's stored config; None
    when the checkpoint does not say (imported weights)."""
    recorded = state.get("trained_long_side")
    if isinstance(recorded, Sequence) and len(recorded) == 2:
        return int(recorded[0]), int(recorded[1])
    arch = state.get("arch")
    if not isinstance(arch, Mapping) or arch.get("name") != "cam_net" \
            or not isinstance(state.get("config"), str):
        return None
    try:
        resize_long = yaml.safe_load(state["config"])["train_cam"]["resize_long"]
        return int(resize_long[0]), int(resize_long[1])
    except (yaml.YAMLError, KeyError, TypeError, IndexError, ValueError):
        return None


def seg_training_long_side(layout: VocLayout, names: Sequence[str],
                           scales: Sequence[float]) -> LongSideRange:
    """DeepLab's trained range: the training images' long sides (headers only) times the
    smallest and the largest of train_seg.scales."""
    sides = [max(image_size(layout.image_path(name))) for name in names]
    return (max(1, round(min(sides) * min(scales))), max(1, round(max(sides) * max(scales))))
