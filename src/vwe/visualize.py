"""Pictures of CAMs: jet overlays and one PNG strip per image (numpy + PIL, no matplotlib).

The maths (CAMs) lives elsewhere; this module only turns arrays into images, in the spirit of
pytorch-grad-cam's `show_cam_on_image`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vwe.data.io import atomic_path, voc_palette

TITLE_HEIGHT = 14  # pixels of the caption band above each panel


def jet(values: np.ndarray) -> np.ndarray:
    """(…, 3) floats in [0, 1]: the jet colour map (blue → cyan → yellow → red) of [0, 1]."""
    x = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    centres = np.array([3.0, 2.0, 1.0], dtype=np.float32)  # red, green, blue peaks at 4x
    return np.clip(1.5 - np.abs(4.0 * x - centres), 0.0, 1.0)


def cam_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8: the image blended with the jet-coloured CAM, (1-alpha)·image + alpha·jet."""
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != cam.shape:
        raise ValueError(f"image {image.shape} and cam {cam.shape} must be (H, W, 3) and (H, W)")
    heat = jet(cam) * 255.0
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * heat
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def label_to_color(label: np.ndarray, palette: np.ndarray | Sequence[int] | None = None
                   ) -> np.ndarray:
    """(H, W, 3) uint8 colours of a label map (255 = ignore gets the palette's entry 255)."""
    colours = voc_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    colours = colours.reshape(-1, 3)
    if label.size and int(label.max()) >= len(colours):
        raise ValueError(f"label {int(label.max())} is outside a {len(colours)}-colour palette")
    return colours[label.astype(np.int64)]


def _titled(panel: np.ndarray, title: str) -> Image.Image:
    height, width = panel.shape[:2]
    canvas = Image.new("RGB", (width, height + TITLE_HEIGHT), (255, 255, 255))
    canvas.paste(Image.fromarray(panel), (0, TITLE_HEIGHT))
    ImageDraw.Draw(canvas).text((2, 1), title, fill=(0, 0, 0))
    return canvas


def cam_panel(image: np.ndarray, gt_label: np.ndarray | None, cams: np.ndarray,
              keys: Sequence[int], class_names: Sequence[str]) -> np.ndarray:
    """(H + title, W·panels, 3) uint8 strip: image | GT colours | one CAM overlay per class.

    keys are 0-based foreground indices and class_names the foreground names (the dataset's
    `class_names`), so the CAM of key k is captioned class_names[k].
    """
    if len(cams) != len(keys):
        raise ValueError(f"{len(cams)} CAMs but {len(keys)} keys")
    panels = [_titled(image, "image")]
    if gt_label is not None:
        panels.append(_titled(label_to_color(gt_label), "ground truth"))
    for cam, key in zip(cams, keys):
        panels.append(_titled(cam_overlay(image, cam), class_names[int(key)]))
    strip = Image.new("RGB", (sum(p.width for p in panels), panels[0].height), (255, 255, 255))
    left = 0
    for panel in panels:
        strip.paste(panel, (left, 0))
        left += panel.width
    return np.asarray(strip)


def save_cam_panel(path: str | Path, image: np.ndarray, gt_label: np.ndarray | None,
                   cams: np.ndarray, keys: Sequence[int], class_names: Sequence[str]) -> Path:
    """Write `cam_panel(...)` as one PNG, through a temporary file renamed into place."""
    return save_image(path, cam_panel(image, gt_label, cams, keys, class_names))


LEGEND_ROW = 16  # pixels per legend entry
LEGEND_WIDTH = 150


def label_overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8: the image blended with the label colours where the label is not
    background, (1-alpha)·image + alpha·colour; background pixels keep the image."""
    if image.shape[:2] != label.shape:
        raise ValueError(f"image {image.shape} and label {label.shape} differ in size")
    colours = label_to_color(label).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    out = np.where((label > 0)[..., None], np.rint(blended), image.astype(np.float32))
    return np.clip(out, 0, 255).astype(np.uint8)


def legend_zoom(image_height: int) -> int:
    """How many times the legend is enlarged beside an image: 1 up to 999 px, then one more per
    500 px, so its names stay readable next to a 4000-pixel photo shown at screen size."""
    return max(1, image_height // 500)


def legend_strip(class_ids: Sequence[int], class_names: Sequence[str], height: int,
                 zoom: int = 1) -> np.ndarray:
    """(max(height, rows), LEGEND_WIDTH·zoom, 3) uint8: one colour swatch and name per class id
    (class_names indexed by id, background at 0), drawn at zoom 1 and enlarged pixel by pixel."""
    if zoom > 1:
        small = legend_strip(class_ids, class_names, -(-height // zoom))
        big = Image.fromarray(small).resize((small.shape[1] * zoom, small.shape[0] * zoom),
                                            Image.Resampling.NEAREST)
        return np.asarray(big)[:max(height, (LEGEND_ROW * len(class_ids) + 4) * zoom)]
    rows = max(height, LEGEND_ROW * len(class_ids) + 4)
    canvas = Image.new("RGB", (LEGEND_WIDTH, rows), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    palette = voc_palette().reshape(-1, 3)
    for row, class_id in enumerate(class_ids):
        top = 2 + row * LEGEND_ROW
        colour = tuple(int(c) for c in palette[int(class_id)])
        draw.rectangle((4, top, 4 + LEGEND_ROW - 4, top + LEGEND_ROW - 4), fill=colour,
                       outline=(0, 0, 0))
        draw.text((LEGEND_ROW + 6, top), class_names[int(class_id)], fill=(0, 0, 0))
    return np.asarray(canvas)


def prediction_overlay(image: np.ndarray, label: np.ndarray, class_names: Sequence[str],
                       alpha: float = 0.5) -> np.ndarray:
    """The overlay of `label` on `image` with a legend of the classes it contains at its right."""
    overlay = label_overlay(image, label, alpha)
    present = [int(i) for i in np.unique(label) if int(i) < len(class_names)]
    legend = legend_strip(present, class_names, overlay.shape[0], legend_zoom(overlay.shape[0]))
    canvas = np.full((legend.shape[0], overlay.shape[1] + legend.shape[1], 3), 255, np.uint8)
    canvas[: overlay.shape[0], : overlay.shape[1]] = overlay
    canvas[:, overlay.shape[1]:] = legend
    return canvas


def save_image(path: str | Path, pixels: np.ndarray) -> Path:
    """An (H, W, 3) uint8 array as a PNG, through a temporary file renamed into place."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
    return path
