"""The generated dataset of docs/synthetic.md, written in VOC layout so every stage reads it
through the VOC code path.

What it poses (docs/synthetic.md#what-it-must-pose):
1. partial discriminative regions: classes come in *families* that share one body (outline,
   texture, colours); only a small mark (a coloured disc/square/ring/cross, `part_fraction` of the
   object's side, near its top) tells family members apart;
2. co-occurring context: every second class is a *context* class with its own background
   texture, used with probability `context_prob` when the class is in the image;
3. 1–3 classes and up to `max_instances` objects per image, painter's-order occlusion (each object
   keeps ≥ 40 % of its pixels visible), sizes from 10 % to 36 % of the short side in half-extent,
   background clutter, and `full_frame_prob` images with one object filling the frame;
4. sizes drawn in [min_side, max_side] per axis (rarely multiples of 16), mild noise, a 3×3
   binomial blur with probability `blur_prob`, JPEG at `jpeg_quality`.

Determinism: one numpy Generator per image, seeded by (seed, image index), and only exact
floating-point operations (+ − × ÷ √, floor) on arrays, so the same seed and Pillow version give
byte-identical files on any machine.
"""

from __future__ import annotations

import colorsys
import json
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from vwe.config import SyntheticConfig
from vwe.data.coco import prepared_dir
from vwe.data.io import write_json_atomic
from vwe.data.synthetic_writers import (
    CocoWriter,
    DatasetWriter,
    SyntheticFolderWriter,
    VocWriter,
)
from vwe.errors import VweError

GENERATOR_VERSION = 1
PART_BODY, PART_MARK = 1, 2  # values of the part map (SegmentationPart/)
RECORD_FILE = "synthetic.json"  # written last: its presence marks a complete dataset
TINY_DEFAULTS = {"num_train_aug": 48, "num_train": 16, "num_val": 16, "num_test": 8,
                 "min_side": 64, "max_side": 96}
SHAPES = ("ellipse", "box", "diamond", "hexagon")
BODY_PATTERNS = ("stripes", "checker", "dots", "rings")
MARKS = ("disc", "square", "ring", "cross")
BG_PATTERNS = ("waves", "mottle", "bricks", "grain", "gradient")
MARK_CENTRE_V = -0.35  # the mark sits above the object's centre, in object-local units
MIN_VISIBLE = 0.4  # fraction of an object's pixels that later objects may not cover


@dataclass(frozen=True)
class ClassLook:
    """How one class is drawn: its family's body plus its own mark (and context background)."""

    name: str
    shape: str
    body_pattern: str
    body_colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    body_freq: float
    mark: str
    mark_colour: tuple[int, int, int]
    context_bg: int  # index into the backgrounds, −1 for classes without context


@dataclass(frozen=True)
class BackgroundLook:
    """One background texture: a pattern between two muted colours."""

    pattern: str
    colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    period: float


@dataclass
class Placed:
    """An accepted object: its class, its pixels and its local coordinates."""

    class_index: int
    mask: np.ndarray  # (H, W) bool, before occlusion
    u: np.ndarray  # (H, W) object-local coordinates, the object spans [−1, 1]
    v: np.ndarray


def resolve_config(cfg: SyntheticConfig) -> SyntheticConfig:
    """Apply the `tiny` size: its counts and sides replace fields still at their defaults."""
    if cfg.size == "default":
        resolved = cfg
    elif cfg.size == "tiny":
        defaults = {f.name: f.default for f in fields(SyntheticConfig)}
        changes = {k: v for k, v in TINY_DEFAULTS.items() if getattr(cfg, k) == defaults[k]}
        resolved = replace(cfg, **changes)
    else:
        raise VweError(f"synthetic.size='{cfg.size}' is unknown; use default or tiny")
    _check_config(resolved)
    return resolved


def _check_config(cfg: SyntheticConfig) -> None:
    problems = {
        "num_classes": cfg.num_classes < 1,
        "num_train": not 0 <= cfg.num_train <= cfg.num_train_aug,
        "min_side": not 32 <= cfg.min_side <= cfg.max_side,
        "part_fraction": not 0.0 < cfg.part_fraction < 1.0,
        "context_prob": not 0.0 <= cfg.context_prob <= 1.0,
        "max_instances": cfg.max_instances < 1,
        "jpeg_quality": not 1 <= cfg.jpeg_quality <= 100,
    }
    for key, bad in problems.items():
        if bad:
            raise VweError(f"synthetic.{key}={getattr(cfg, key)} is out of range (num_train ≤ "
                           "num_train_aug, 32 ≤ min_side ≤ max_side, fractions in (0, 1))")


def _rgb(hue: float, sat: float, val: float) -> tuple[int, int, int]:
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, sat, val)
    return (round(red * 255), round(green * 255), round(blue * 255))


def design(cfg: SyntheticConfig) -> tuple[list[ClassLook], list[BackgroundLook]]:
    """The class and background looks: families of ~3 classes share a body
    (docs/synthetic.md#what-it-must-pose item 1)."""
    rng = np.random.default_rng([cfg.seed, 0])
    hue0 = float(rng.random())
    num = cfg.num_classes
    families = max(1, math.ceil(num / 3))
    context = [c for c in range(num) if c % 2 == 1]
    looks = []
    for c in range(num):
        fam = c % families
        hue = hue0 + fam / families
        looks.append(ClassLook(
            name=f"c{c + 1:02d}_{SHAPES[fam % 4]}_{MARKS[c % 4]}",
            shape=SHAPES[fam % 4], body_pattern=BODY_PATTERNS[(fam + fam // 4) % 4],
            body_colours=(_rgb(hue, 0.35, 0.85), _rgb(hue + 0.04, 0.5, 0.5)),
            body_freq=2.0 + 0.5 * (fam % 3), mark=MARKS[c % 4],
            mark_colour=_rgb(hue0 + 0.5 / num + c / num, 1.0, 1.0 if c % 2 == 0 else 0.8),
            context_bg=context.index(c) if c in context else -1,
        ))
    num_bg = len(context) + 2
    backgrounds = [BackgroundLook(
        pattern=BG_PATTERNS[b % len(BG_PATTERNS)],
        colours=(_rgb(hue0 + 0.3 + b / num_bg, 0.3, 0.6),
                 _rgb(hue0 + 0.35 + b / num_bg, 0.25, 0.35)),
        period=10.0 + 4.0 * (b % 3),
    ) for b in range(num_bg)]
    return looks, backgrounds


# ---- array helpers: exact operations only (see the module docstring) ----

def _frac(t: np.ndarray) -> np.ndarray:
    return t - np.floor(t)


def _tri(t: np.ndarray) -> np.ndarray:
    """Triangle wave in [0, 1] with period 1 (a sine without transcendental functions)."""
    return np.abs(2.0 * _frac(t) - 1.0)


def _value_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth noise in [0, 1]: a random grid bilinearly interpolated at `cell` pixels."""
    grid = rng.random((int(height / cell) + 2, int(width / cell) + 2)).astype(np.float32)
    ys = (np.arange(height, dtype=np.float32) + 0.5) / np.float32(cell)
    xs = (np.arange(width, dtype=np.float32) + 0.5) / np.float32(cell)
    iy, ix = ys.astype(np.int64), xs.astype(np.int64)
    fy, fx = (ys - iy)[:, None], (xs - ix)[None, :]
    top = grid[iy][:, ix] * (1 - fx) + grid[iy][:, ix + 1] * fx
    bottom = grid[iy + 1][:, ix] * (1 - fx) + grid[iy + 1][:, ix + 1] * fx
    return top * (1 - fy) + bottom * fy


def _mix(colours: tuple[tuple[int, ...], tuple[int, ...]], weight: np.ndarray) -> np.ndarray:
    """colour0 + (colour1 − colour0)·weight per pixel: (...) → (..., 3) float32."""
    first = np.asarray(colours[0], dtype=np.float32)
    second = np.asarray(colours[1], dtype=np.float32)
    return first + (second - first) * weight[..., None].astype(np.float32)


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    if shape == "ellipse":
        return u * u + v * v <= 1.0
    if shape == "box":
        return (u * u) ** 2 + (v * v) ** 2 <= 1.0
    if shape == "diamond":
        return au + av <= 1.0
    return np.maximum(av, 0.5 * av + 0.866 * au) <= 0.95  # hexagon


def _body_weight(pattern: str, u: np.ndarray, v: np.ndarray, freq: float) -> np.ndarray:
    if pattern == "stripes":
        return (_tri((u + v) * freq) > 0.5).astype(np.float32)
    if pattern == "checker":
        return ((np.floor(u * freq) + np.floor(v * freq)) % 2).astype(np.float32)
    if pattern == "dots":
        du, dv = _frac(u * freq) - 0.5, _frac(v * freq) - 0.5
        return (du * du + dv * dv < 0.09).astype(np.float32)
    return (_frac(np.sqrt(u * u + v * v) * freq * 1.5) < 0.5).astype(np.float32)  # rings


def _mark_mask(mark: str, u: np.ndarray, v: np.ndarray, half: float) -> np.ndarray:
    mu, mv = u / half, (v - MARK_CENTRE_V) / half
    radius2 = mu * mu + mv * mv
    if mark == "disc":
        return radius2 <= 1.0
    if mark == "square":
        return np.maximum(np.abs(mu), np.abs(mv)) <= 0.85
    if mark == "ring":
        return (radius2 <= 1.0) & (radius2 >= 0.3)
    arm_u, arm_v = np.abs(mu) <= 0.35, np.abs(mv) <= 0.35  # cross
    return (arm_u & (np.abs(mv) <= 1.0)) | (arm_v & (np.abs(mu) <= 1.0))


def _pick_background(rng: np.random.Generator, present: list[ClassLook], num_bg: int,
                     context_prob: float) -> int:
    """A present context class's own texture with `context_prob`, else mostly a neutral one."""
    context = [look.context_bg for look in present if look.context_bg >= 0]
    if context and rng.random() < context_prob:
        return context[int(rng.integers(len(context)))]
    if rng.random() < 0.7:
        return num_bg - 1 - int(rng.integers(2))  # the two neutral backgrounds
    return int(rng.integers(num_bg))


def _background(rng: np.random.Generator, look: BackgroundLook, ys: np.ndarray,
                xs: np.ndarray) -> np.ndarray:
    """The background texture over the whole image, (H, W, 3) float32."""
    height, width = ys.shape
    period = look.period
    if look.pattern == "waves":
        weight = _tri(ys / period + 0.5 * _tri(xs / (3 * period)))
    elif look.pattern == "mottle":
        weight = _value_noise(rng, height, width, period)
    elif look.pattern == "bricks":
        row = np.floor(ys / (period / 2))
        shifted = xs + (row % 2) * (period / 2)
        weight = ((_frac(ys / (period / 2)) < 0.2) | (_frac(shifted / period) < 0.1)) * 1.0
    elif look.pattern == "grain":
        weight = rng.random((height, width)).astype(np.float32)
    else:  # gradient, with a little mottle
        weight = 0.8 * ys / height + 0.2 * _value_noise(rng, height, width, 2 * period)
    return _mix(look.colours, weight)


def _paint_clutter(rng: np.random.Generator, img: np.ndarray, ys: np.ndarray,
                   xs: np.ndarray) -> None:
    """Small grey-brown blobs on the background: clutter that belongs to no class."""
    height, width = img.shape[:2]
    for _ in range(int(rng.integers(0, 6))):
        cy, cx = rng.random() * height, rng.random() * width
        radius = (0.03 + 0.05 * rng.random()) * min(height, width)
        blob = (ys - cy) ** 2 + (xs - cx) ** 2 <= radius * radius
        grey = 60 + 120 * rng.random()
        img[blob] = np.array([grey * 1.1, grey, grey * 0.8], dtype=np.float32)


def _sample_classes(rng: np.random.Generator, cfg: SyntheticConfig) -> list[int]:
    """Class of each object to place: 1–3 classes, each at least once, up to max_instances."""
    num_cls = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    num_cls = min(num_cls, cfg.num_classes, cfg.max_instances)
    chosen = [int(c) for c in rng.choice(cfg.num_classes, size=num_cls, replace=False)]
    extra = int(rng.binomial(cfg.max_instances - num_cls, 0.3))
    return chosen + [chosen[int(rng.integers(num_cls))] for _ in range(extra)]


def _object_frame(rng: np.random.Generator, height: int, width: int,
                  full_frame: bool) -> tuple[float, float, float, float, float]:
    """(cy, cx, ry, rx, angle) of one object: random, or centred and filling the frame."""
    angle = (rng.random() - 0.5) * 0.8
    if full_frame:
        return (height * (0.45 + 0.1 * rng.random()), width * (0.45 + 0.1 * rng.random()),
                height * (0.55 + 0.1 * rng.random()), width * (0.55 + 0.1 * rng.random()), angle)
    radius = (0.1 + 0.26 * rng.random()) * min(height, width)
    aspect = math.sqrt(0.75 + 0.6 * rng.random())
    return (height * (0.1 + 0.8 * rng.random()), width * (0.1 + 0.8 * rng.random()),
            radius / aspect, radius * aspect, angle)


def _place_objects(rng: np.random.Generator, cfg: SyntheticConfig, looks: list[ClassLook],
                   ys: np.ndarray, xs: np.ndarray) -> tuple[list[Placed], np.ndarray]:
    """Objects in painter's order and the owner map (−1 background, else object index)."""
    height, width = ys.shape
    full_frame = rng.random() < cfg.full_frame_prob
    classes = _sample_classes(rng, cfg)[:1] if full_frame else _sample_classes(rng, cfg)
    owner = np.full((height, width), -1, dtype=np.int64)
    placed: list[Placed] = []
    areas: list[int] = []
    for class_index in classes:
        for _ in range(8):  # tries before the object is dropped
            cy, cx, ry, rx, angle = _object_frame(rng, height, width, full_frame)
            cos, sin = math.cos(angle), math.sin(angle)
            dy, dx = ys - cy, xs - cx
            u, v = (cos * dx + sin * dy) / rx, (cos * dy - sin * dx) / ry
            mask = _shape_mask(looks[class_index].shape, u, v)
            trial = np.where(mask, len(placed), owner)
            visible = np.bincount(trial[trial >= 0], minlength=len(placed) + 1)
            if mask.sum() >= 20 and all(visible[i] >= MIN_VISIBLE * a for i, a in enumerate(areas)):
                placed.append(Placed(class_index, mask, u, v))
                areas.append(int(mask.sum()))
                owner = trial
                break
    return placed, owner


def _paint_object(rng: np.random.Generator, img: np.ndarray, obj: Placed, look: ClassLook,
                  part_fraction: float) -> None:
    u, v = obj.u[obj.mask], obj.v[obj.mask]  # (n,) the object's pixels only
    colours = _mix(look.body_colours, _body_weight(look.body_pattern, u, v, look.body_freq))
    colours[_mark_mask(look.mark, u, v, part_fraction)] = np.asarray(look.mark_colour, np.float32)
    img[obj.mask] = colours * np.float32(0.85 + 0.3 * rng.random())


def _ignore_band(owner: np.ndarray) -> np.ndarray:
    """Pixels whose 3×3 neighbourhood holds another owner: the thin VOC-style 255 band."""
    padded = np.pad(owner, 1, mode="edge")
    height, width = owner.shape
    band = np.zeros(owner.shape, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            band |= padded[dy:dy + height, dx:dx + width] != owner
    return band


def _artefacts(rng: np.random.Generator, img: np.ndarray, cfg: SyntheticConfig) -> np.ndarray:
    """Noise and, sometimes, a 3×3 binomial blur; then uint8."""
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(cfg.noise_std)
    if rng.random() < cfg.blur_prob:
        pad = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
        img = (pad[:-2] + 2 * pad[1:-1] + pad[2:]) * 0.25
        img = (img[:, :-2] + 2 * img[:, 1:-1] + img[:, 2:]) * 0.25
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def part_map(placed: list[Placed], owner: np.ndarray, looks: list[ClassLook],
             part_fraction: float, band: np.ndarray) -> np.ndarray:
    """(H, W) uint8: which part of its object each pixel shows: 0 background, 1 body, 2 the
    distinguishing mark, 255 the ignore band (docs/synthetic.md#part-masks)."""
    parts = np.zeros(owner.shape, dtype=np.uint8)
    for i, obj in enumerate(placed):
        visible = owner == i
        marked = np.zeros(owner.shape, dtype=bool)
        marked[obj.mask] = _mark_mask(looks[obj.class_index].mark, obj.u[obj.mask],
                                      obj.v[obj.mask], part_fraction)
        parts[visible] = np.where(marked[visible], PART_MARK, PART_BODY)
    parts[band] = 255
    return parts


def render_image(cfg: SyntheticConfig, looks: list[ClassLook],
                 backgrounds: list[BackgroundLook],
                 index: int) -> tuple[np.ndarray, np.ndarray, list[Placed], np.ndarray]:
    """Image `index`: (H, W, 3) uint8 RGB, (H, W) uint8 mask, the objects (XML entries) and the
    part map (`part_map`; read by the part-level diagnostics only)."""
    rng = np.random.default_rng([cfg.seed, 1, index])
    height, width = (int(s) for s in rng.integers(cfg.min_side, cfg.max_side + 1, size=2))
    ys = np.arange(height, dtype=np.float32)[:, None] + 0.5 + np.zeros((1, width), np.float32)
    xs = np.arange(width, dtype=np.float32)[None, :] + 0.5 + np.zeros((height, 1), np.float32)
    placed, owner = _place_objects(rng, cfg, looks, ys, xs)
    bg = _pick_background(rng, [looks[o.class_index] for o in placed], len(backgrounds),
                          cfg.context_prob)
    img = _background(rng, backgrounds[bg], ys, xs)
    _paint_clutter(rng, img, ys, xs)
    for obj in placed:
        _paint_object(rng, img, obj, looks[obj.class_index], cfg.part_fraction)
    classes = np.array([o.class_index + 1 for o in placed] + [0], dtype=np.uint8)
    mask = classes[owner]  # owner −1 picks the trailing 0 (background)
    band = _ignore_band(owner)
    mask[band] = 255
    visible = [Placed(o.class_index, owner == i, o.u, o.v) for i, o in enumerate(placed)]
    parts = part_map(placed, owner, looks, cfg.part_fraction, band)
    return _artefacts(rng, img, cfg), mask, visible, parts


def annotation_xml(name: str, size: tuple[int, int], objects: list[Placed],
                   class_names: list[str]) -> str:
    """VOC-style XML: one `<object>` per instance with its visible box (1-based, inclusive)."""
    height, width = size
    parts = [f"<annotation>\n  <folder>synthetic</folder>\n  <filename>{name}.jpg</filename>\n"
             f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n"
             "  <segmented>1</segmented>\n"]
    for obj in objects:
        rows, cols = np.nonzero(obj.mask)
        truncated = int(rows.min() == 0 or cols.min() == 0 or rows.max() == height - 1
                        or cols.max() == width - 1)
        parts.append(
            f"  <object>\n    <name>{class_names[obj.class_index]}</name>\n"
            f"    <pose>Unspecified</pose>\n    <truncated>{truncated}</truncated>\n"
            "    <difficult>0</difficult>\n"
            f"    <bndbox><xmin>{cols.min() + 1}</xmin><ymin>{rows.min() + 1}</ymin>"
            f"<xmax>{cols.max() + 1}</xmax><ymax>{rows.max() + 1}</ymax></bndbox>\n"
            "  </object>\n")
    parts.append("</annotation>\n")
    return "".join(parts)


def split_names(cfg: SyntheticConfig) -> dict[str, list[str]]:
    """Image names per split: train ⊂ train_aug (as in VOC), val and test disjoint."""
    names = [f"syn_{i:06d}" for i in range(cfg.num_train_aug + cfg.num_val + cfg.num_test)]
    train_aug = names[:cfg.num_train_aug]
    rng = np.random.default_rng([cfg.seed, 2])
    train = sorted(train_aug[i] for i in rng.choice(len(train_aug), cfg.num_train, replace=False))
    val_end = cfg.num_train_aug + cfg.num_val
    return {"train_aug": train_aug, "train": train, "val": names[cfg.num_train_aug:val_end],
            "test": names[val_end:]}


def recorded_config(cfg: SyntheticConfig) -> dict[str, Any]:
    """The config as synthetic.json stores it; `format` only when not voc, so a VOC dataset's
    files (synthetic.json included) are those of the generator before formats existed."""
    config = asdict(cfg)
    if config["format"] == "voc":
        del config["format"]
    return config


def dataset_writer(root: Path, cfg: SyntheticConfig, class_names: list[str],
                   splits: dict[str, list[str]], lists_dir: Path | None = None) -> DatasetWriter:
    """The writer of `cfg.format` (docs/synthetic.md#formats); coco's extra split lists go to
    `lists_dir` (default: the prepared folder's, `<root>/vwe_prepared/lists`)."""
    if cfg.format == "folder":
        return SyntheticFolderWriter(root, class_names, cfg.jpeg_quality)
    if cfg.format == "coco":
        return CocoWriter(root, class_names, cfg.jpeg_quality, splits,
                          lists_dir or prepared_dir(root) / "lists")
    if cfg.format == "voc":
        return VocWriter(root, class_names, cfg.jpeg_quality)
    raise VweError(f"synthetic.format='{cfg.format}' is unknown; use voc, folder or coco")


def generate_dataset(root: str | Path, cfg: SyntheticConfig,
                     lists_dir: Path | None = None) -> dict[str, Any]:
    """Write the generated dataset in `cfg.format` (VOC layout by default) under `root`;
    returns a summary."""
    start = time.perf_counter()
    root = Path(root)
    resolved = resolve_config(cfg)
    looks, backgrounds = design(resolved)
    class_names = [look.name for look in looks]
    for stale in (root / RECORD_FILE, root / "ImageSets" / "Segmentation" / "cls_labels.json"):
        stale.unlink(missing_ok=True)
    splits = split_names(resolved)
    writer = dataset_writer(root, resolved, class_names, splits, lists_dir)
    all_names = splits["train_aug"] + splits["val"] + splits["test"]
    image_counts = np.zeros(resolved.num_classes, dtype=np.int64)
    instances = 0
    for index, name in enumerate(all_names):
        image, mask, objects, parts = render_image(resolved, looks, backgrounds, index)
        xml = annotation_xml(name, mask.shape, objects, class_names)
        writer.add(index, name, image, mask, objects, xml, parts)
        image_counts[sorted({o.class_index for o in objects})] += 1
        instances += len(objects)
    writer.finish(splits)
    summary = {
        "root": str(root), "num_classes": resolved.num_classes, "class_names": class_names,
        "images": {split: len(names) for split, names in splits.items()},
        "instances": instances, "images_per_class": image_counts.tolist(),
        "context_classes": {look.name: backgrounds[look.context_bg].pattern
                            for look in looks if look.context_bg >= 0},
        "seconds": round(time.perf_counter() - start, 2),
    }
    stored = {k: v for k, v in summary.items() if k not in ("root", "seconds")}  # reproducible
    write_json_atomic(root / RECORD_FILE, {"generator_version": GENERATOR_VERSION,
                                           "config": recorded_config(cfg),
                                           "resolved": recorded_config(resolved),
                                           "summary": stored})
    return summary


def existing_summary(root: str | Path, cfg: SyntheticConfig,
                     lists_dir: Path | None = None) -> dict[str, Any] | None:
    """The summary of a complete dataset at `root` made with this config, else None."""
    root = Path(root)
    try:
        record = json.loads((root / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("config") != recorded_config(cfg) \
            or record.get("generator_version") != GENERATOR_VERSION:
        return None
    resolved = resolve_config(cfg)
    splits = split_names(resolved)
    writer = dataset_writer(root, resolved, [look.name for look in design(resolved)[0]], splits,
                            lists_dir)
    if not writer.is_complete(splits):
        return None
    return {**record.get("summary", {}), "root": str(root)}
