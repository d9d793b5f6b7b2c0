"""`vwe codebook`: what the learned visual words look like (Fig. 5 of the paper), from a trained
CAM network (docs/method.md#codebook-gallery).

Every feature position (stride 16) of the images of `codebook.split` is assigned its arg-max word
Y; a word's usage is its share of the positions and its purity the share of its positions whose
ground-truth class (the mask at the position's centre; 255 left out) is the word's most frequent
one. For the `codebook.words` most used words the gallery shows the `codebook.patches` image
crops (`codebook.patch_size` pixels around the position) where the word's probability P is
highest, framed green when the crop's class is the word's dominant class, red otherwise.
Writes `<run_dir>/codebook/gallery.png` and `codebook.json`.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from vwe.config import Config
from vwe.data.io import read_image, write_json_atomic
from vwe.data.transforms import normalize
from vwe.data.voc import open_dataset
from vwe.engine.checkpoint import load_trained
from vwe.engine.progress import progress
from vwe.engine.run_dir import RunDir
from vwe.errors import VweError
from vwe.visualize import save_image

log = logging.getLogger(__name__)

STRIDE = 16  # the CAM network's output stride
IGNORE = 255
FRAME = 3  # pixels of the coloured frame around a patch
MATCH, MISMATCH = (40, 170, 60), (210, 50, 40)


@dataclass
class WordStats:
    """Per word: positions per ground-truth class, and its best patches as a min-heap of
    (P, image index, row, column)."""

    num_words: int
    num_classes: int
    counts: np.ndarray = field(init=False)
    best: list[list[tuple[float, int, int, int]]] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = np.zeros((self.num_words, self.num_classes + 1), dtype=np.int64)
        self.best = [[] for _ in range(self.num_words)]

    def add(self, probs: np.ndarray, classes: np.ndarray, image: int, keep: int) -> None:
        """probs (k, h, w) of one image; classes (h, w) ground truth per position (-1 unknown)."""
        words = probs.argmax(axis=0)
        known = classes >= 0
        np.add.at(self.counts, (words[known], classes[known]), 1)
        np.add.at(self.counts[:, -1], words[~known], 1)  # last column: no class known
        for row, col in zip(*np.nonzero(np.ones_like(words, dtype=bool))):
            word = int(words[row, col])
            entry = (float(probs[word, row, col]), image, int(row), int(col))
            heap = self.best[word]
            if len(heap) < keep:
                heapq.heappush(heap, entry)
            elif entry > heap[0]:
                heapq.heapreplace(heap, entry)


def position_classes(mask: np.ndarray | None, height: int, width: int) -> np.ndarray:
    """(h, w) ground-truth class at each feature position's centre; -1 where unknown."""
    if mask is None:
        return np.full((height, width), -1, dtype=np.int64)
    rows = np.minimum(np.arange(height) * STRIDE + STRIDE // 2, mask.shape[0] - 1)
    cols = np.minimum(np.arange(width) * STRIDE + STRIDE // 2, mask.shape[1] - 1)
    classes = mask[np.ix_(rows, cols)].astype(np.int64)
    classes[classes == IGNORE] = -1
    return classes


def run(cfg: Config) -> dict[str, Any]:
    settings = cfg.codebook
    layout = open_dataset(cfg.data)
    names = layout.read_split(settings.split)
    if settings.max_images:
        names = names[: settings.max_images]
    checkpoint = RunDir(cfg).cam_checkpoint
    trained = load_trained(checkpoint, "cam_net", layout.num_classes)
    model = trained.model
    codebook = trained.state.get("codebook")
    stats = WordStats(int(trained.kwargs["num_words"]), layout.num_classes + 1)
    with_masks = layout.has_masks(names)
    for index, name in enumerate(progress(names, total=len(names), desc="codebook")):
        image = read_image(layout.image_path(name))
        pixels = torch.from_numpy(normalize(image).transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            probs = model(pixels, codebook=codebook).word_probs[0].float().numpy()
        mask = layout.read_checked_mask(name) if with_masks else None
        stats.add(probs, position_classes(mask, *probs.shape[1:]), index, settings.patches)
    class_names = ["background", *layout.class_names]
    report = word_report(stats, class_names, settings.words)
    out = RunDir(cfg).root / "codebook"
    gallery = save_image(out / "gallery.png",
                         gallery_image(report["words"], stats, layout, names, settings.patch_size))
    report.update(checkpoint=str(checkpoint), split=settings.split, images=len(names),
                  gallery=str(gallery))
    write_json_atomic(out / "codebook.json", report)
    table = word_table(report)
    log.info("codebook: %s and %s", gallery, out / "codebook.json")
    return {"table": table, "json": str(out / "codebook.json"), "gallery": str(gallery)}


def word_report(stats: WordStats, class_names: list[str], top: int) -> dict[str, Any]:
    """Usage and purity of every word, the `top` most used first."""
    per_word = stats.counts.sum(axis=1)
    total = max(int(per_word.sum()), 1)
    labelled = stats.counts[:, :-1]
    words = []
    for word in np.argsort(-per_word, kind="stable"):
        known = int(labelled[word].sum())
        dominant = int(labelled[word].argmax()) if known else -1
        words.append({
            "word": int(word), "positions": int(per_word[word]),
            "usage": float(per_word[word]) / total,
            "dominant_class": class_names[dominant] if dominant >= 0 else None,
            "dominant_id": dominant,
            "purity": float(labelled[word, dominant]) / known if known else None,
            "per_class": {class_names[c]: int(n) for c, n in enumerate(labelled[word]) if n},
        })
    used = sum(1 for w in words if w["positions"])
    return {"num_words": stats.num_words, "used_words": used, "positions": total,
            "words": words[:top], "all_words": words}


def gallery_image(words: list[dict[str, Any]], stats: WordStats, layout: Any,
                  names: list[str], patch: int) -> np.ndarray:
    """One row per word: a caption, then its best patches, framed by class agreement."""
    per_row = max((len(stats.best[w["word"]]) for w in words), default=1) or 1
    caption = 150
    cell = patch + 2 * FRAME + 4
    canvas = Image.new("RGB", (caption + per_row * cell, max(1, len(words)) * cell),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    images: dict[int, np.ndarray] = {}
    for row, word in enumerate(words):
        top = row * cell
        purity = "-" if word["purity"] is None else f"{100 * word['purity']:.0f}%"
        draw.text((4, top + 4), f"word {word['word']}", fill=(0, 0, 0))
        draw.text((4, top + 18), f"use {100 * word['usage']:.1f}%", fill=(0, 0, 0))
        draw.text((4, top + 32), f"{word['dominant_class'] or '-'} {purity}", fill=(0, 0, 0))
        for slot, (_, index, r, c) in enumerate(sorted(stats.best[word["word"]], reverse=True)):
            if index not in images:
                images[index] = read_image(layout.image_path(names[index]))
            crop, centre_class = patch_at(images[index], layout, names[index], r, c, patch)
            colour = MATCH if centre_class == word["dominant_id"] else MISMATCH
            left = caption + slot * cell
            draw.rectangle((left, top + 2, left + patch + 2 * FRAME - 1,
                            top + 2 + patch + 2 * FRAME - 1), fill=colour)
            canvas.paste(Image.fromarray(crop), (left + FRAME, top + 2 + FRAME))
    return np.asarray(canvas)


def patch_at(image: np.ndarray, layout: Any, name: str, row: int, col: int,
             patch: int) -> tuple[np.ndarray, int]:
    """The (patch, patch, 3) crop centred on a feature position (edge-padded) and the ground-truth
    class at its centre (-1 without a mask)."""
    cy, cx = row * STRIDE + STRIDE // 2, col * STRIDE + STRIDE // 2
    half = patch // 2
    padded = np.pad(image, ((half, half), (half, half), (0, 0)), mode="edge")
    cy, cx = min(cy, image.shape[0] - 1), min(cx, image.shape[1] - 1)
    crop = padded[cy: cy + patch, cx: cx + patch]
    try:
        mask = layout.read_mask(name)
        centre = int(mask[cy, cx])
    except (VweError, OSError):
        centre = -1
    return np.ascontiguousarray(crop), (-1 if centre == IGNORE else centre)


def word_table(report: dict[str, Any]) -> str:
    lines = [f"vwe codebook: {report['used_words']} of {report['num_words']} words used over "
             f"{report['positions']} positions ({report['images']} images of "
             f"{report['split']})", f"{'word':>6s}{'usage %':>10s}{'purity %':>10s}  class",
             "-" * 44]
    for word in report["words"]:
        purity = "-" if word["purity"] is None else f"{100 * word['purity']:.1f}"
        lines.append(f"{word['word']:>6d}{100 * word['usage']:>10.2f}{purity:>10s}  "
                     f"{word['dominant_class'] or '-'}")
    return "\n".join(lines)
