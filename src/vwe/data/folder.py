"""The `folder` dataset format: a folder of images and a tags file, for users' own data.

Layout (`data.format=folder`, `data.root` the dataset's folder):
- images: `<root>/<name>.{jpg,jpeg,png,webp,bmp}`, or under `<root>/images/` (`JPEGImages/`)
  when the root holds none (any mode, read by `data.io.read_image`);
- tags: `data.tags` (default `<root>/tags.csv`): CSV with columns `name,tags` (tags separated by
  spaces or `;`), or JSON `{"name": ["tag", …]}`;
- classes: `data.classes`, else `<root>/classes.txt` (one per line), else the sorted set of tags;
- masks (optional, for evaluation only): `data.masks`, else `<root>/masks/` when present,
  palette or index PNGs `<name>.png`;
- splits: `<root>/splits/<split>.txt` when present (`train_aug` falls back to `train.txt`), else
  `val` is a deterministic ~`data.val_fraction` of the images by hashing names and `train`
  (alias `train_aug`) every tagged image not in val, `val.txt` or hashed: never a val image.
The interface is `VocLayout`'s, so every stage opens it through `voc.open_dataset`.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vwe.data.io import (
    read_text_file,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from vwe.data.layout import DatasetLayout, read_name_list
from vwe.errors import VweError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
TRAIN_SPLITS = ("train", "train_aug")


class FolderLayout(DatasetLayout):
    """Images, image-level tags and optional masks of one folder (see the module docstring)."""

    def __init__(self, root: str | Path, tags: str = "", masks: str = "",
                 classes: Sequence[str] = (), val_fraction: float = 0.1,
                 negatives: str = "") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise VweError(f"image folder {self.root} not found; set data.root to the folder "
                           "that holds your images")
        self.image_dir = find_image_dir(self.root)
        self.tags_path = Path(tags) if tags else self.root / "tags.csv"
        self.masks = Path(masks) if masks else found_mask_dir(self.root)
        self.val_fraction = val_fraction
        self._refuse_image_folder_as_root(tags)
        self.tags = read_tags(self.tags_path)
        self.class_names = self._class_names(list(classes))
        self._check_tags()
        self.negatives = self._read_negatives(negatives)
        self.images = self._index_images()

    def _class_names(self, given: list[str]) -> list[str]:
        if given:
            return list(given)
        listed = self.root / "classes.txt"
        if listed.is_file():
            names = [line.strip() for line in read_text_file(listed, "class list").splitlines()
                     if line.strip()]
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                raise VweError(f"class list {listed} names {', '.join(twice)} more than once; "
                               "keep one line per class (ids follow the line order)")
            if names:
                return names
        return sorted({tag for tags in self.tags.values() for tag in tags})

    def _refuse_image_folder_as_root(self, tags: str) -> None:
        """data.root given as the images folder of the usual layout (its parent holds tags.csv,
        classes.txt, splits/): say which root to set, rather than a missing tags file."""
        parent = self.root.resolve().parent
        if not tags and not self.tags_path.is_file() and (parent / "tags.csv").is_file():
            raise VweError(f"data.root {self.root} holds no tags.csv, but its parent does: set "
                           f"data.root={parent} (images/ and masks/ are found inside it)")

    def _check_tags(self) -> None:
        known = set(self.class_names)
        for name, tags in self.tags.items():
            unknown = [tag for tag in tags if tag not in known]
            if unknown:
                raise VweError(f"tags file {self.tags_path}: image '{name}' has tag "
                               f"'{unknown[0]}', not among the classes "
                               f"({', '.join(self.class_names)}); add it to classes.txt or "
                               "data.classes, or fix the tag")

    def _read_negatives(self, listed: str) -> list[str]:
        """Names of photos with no object, trained on with an all-zero label (data.negatives)."""
        if not listed:
            return []
        path = Path(listed) if Path(listed).is_absolute() else self.root / listed
        if not path.is_file():
            raise VweError(f"negatives list {path} not found (data.negatives); give a file of "
                           "image names, one a line, or leave the key empty")
        names = [Path(name).stem for name in read_name_list(path)]
        tagged = [name for name in names if name in self.tags]
        if tagged:
            raise VweError(f"negatives list {path} names '{tagged[0]}', which has tags in "
                           f"{self.tags_path}; a negative photo has no object: remove one line")
        log.debug("%d negative photos (no object) from %s join the training splits", len(names),
                 path)
        return names

    def _index_images(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for path in sorted(self.image_dir.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file() \
                    or is_system_file(path):
                continue
            if path.stem in found:
                raise VweError(f"two images are named '{path.stem}' in {self.image_dir} "
                               f"({found[path.stem].name}, {path.name}); rename one")
            found[path.stem] = path
        missing = [name for name in [*self.tags, *self.negatives] if name not in found]
        if missing:
            other = sorted(p.name for p in self.image_dir.glob(f"{glob_escape(missing[0])}.*")
                           if p.is_file())
            if other:
                raise VweError(f"tags file {self.tags_path} lists '{missing[0]}', whose file "
                               f"{other[0]} is not a supported image type; convert it to one of "
                               f"{', '.join(IMAGE_SUFFIXES)} ({len(missing)} of {len(self.tags)} "
                               "images without a supported file)")
            raise VweError(f"tags file {self.tags_path} lists '{missing[0]}' but {self.image_dir} "
                           f"has no such image ({len(missing)} of {len(self.tags)} missing); add "
                           "the images or remove their lines")
        unlisted = len(set(found) - set(self.tags) - set(self.negatives))
        if unlisted:
            warn_unlisted(unlisted, self.image_dir, self.tags_path)
        return {name: found[name] for name in [*self.tags, *self.negatives]}

    # ---- the VocLayout interface ----
    def read_split(self, split: str) -> list[str]:
        """A split's names: its list file, else (train_aug) train.txt, else every tagged image
        not in val (val.txt or the hash split): a val image never lands in a training split."""
        if split not in (*TRAIN_SPLITS, "val") and self._split_file(split) is None:
            raise VweError(f"split '{split}' of the folder dataset {self.root} is not defined: "
                           f"use train or val (a hash split by data.val_fraction) or write "
                           f"{self.root / 'splits' / f'{split}.txt'}")
        names = self._names(split)
        if not names:
            raise VweError(f"split '{split}' of {self.root} is empty; lower or raise "
                           "data.val_fraction or write the split list")
        if split in TRAIN_SPLITS:
            names = names + [name for name in self.negatives if name not in names]
        return names

    def _names(self, split: str) -> list[str]:
        """The tagged images of a split, possibly none."""
        listed = self._split_file(split)
        if listed is not None:
            return self._read_split_file(listed)
        if split in TRAIN_SPLITS:
            held_out = set(self._names("val"))
            names = [name for name in self.tags if name not in held_out]
            log.info("split '%s' of %s: every tagged image not in val (%d of %d)", split,
                     self.root, len(names), len(self.tags))
            return names
        if self._split_file("train") is not None:
            trained = set(self._names("train"))  # the images splits/train.txt leaves out
            return [name for name in self.tags if name not in trained]
        return [name for name in self.tags if hash_fraction(name) < self.val_fraction]

    def _split_file(self, split: str) -> Path | None:
        """`splits/<split>.txt`, or for train_aug `splits/train.txt` (said in the log)."""
        folder = self.root / "splits"
        if (folder / f"{split}.txt").is_file():
            return folder / f"{split}.txt"
        if split == "train_aug" and (folder / "train.txt").is_file():
            log.info("split 'train_aug' of %s: no splits/train_aug.txt, using splits/train.txt",
                     self.root)
            return folder / "train.txt"
        return None

    def _read_split_file(self, listed: Path) -> list[str]:
        names = read_name_list(listed)
        unknown = [name for name in names if name not in self.tags]
        if unknown:
            raise VweError(f"split list {listed} names '{unknown[0]}', which has no line in "
                           f"{self.tags_path}")
        return names

    def image_path(self, name: str) -> Path:
        if name not in self.images:
            raise VweError(f"image '{name}' is not in {self.tags_path}")
        return self.images[name]

    def label_source(self, name: str) -> Path:
        """Where the image's labels come from (named in messages)."""
        return self.tags_path

    def mask_path(self, name: str) -> Path:
        if self.masks is None:
            raise VweError(f"the folder dataset {self.root} has no masks: set data.masks to a "
                           "folder of <name>.png masks to evaluate")
        return self.masks / f"{name}.png"

    def has_masks(self, names: list[str]) -> bool:
        """Whether any listed image has a mask (none, or no data.masks: no ground truth)."""
        return self.masks is not None and any(self.mask_path(n).is_file() for n in names)

    def masks_where(self) -> str:
        return str(self.masks) if self.masks is not None else "data.masks (not set)"

    def labels_for(self, names: list[str]) -> dict[str, np.ndarray]:
        index = {class_name: i for i, class_name in enumerate(self.class_names)}
        out = {}
        for name in names:
            vector = np.zeros(self.num_classes, dtype=np.float32)  # a negative: all zero
            vector[[index[tag] for tag in self.tags.get(name, [])]] = 1.0
            out[name] = vector
        return out





@functools.cache
def warn_unlisted(count: int, image_dir: Path, tags_path: Path) -> None:
    """Once per process and folder, however often a run opens the dataset."""
    log.warning("%d images in %s have no line in %s and are left out", count, image_dir,
                tags_path)


IMAGE_SUBFOLDERS = ("images", "JPEGImages")  # where people keep photos beside tags.csv
MASK_SUBFOLDERS = ("masks", "SegmentationClass")


def find_image_dir(root: Path) -> Path:
    """The images' folder: the root itself, or its `images/` (`JPEGImages/`) when the root
    holds no image: the tags, classes and splits stay in the root either way."""
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir()):
        return root
    for name in IMAGE_SUBFOLDERS:
        if (root / name).is_dir():
            return root / name
    return root


def found_mask_dir(root: Path) -> Path | None:
    """`masks/` (or `SegmentationClass/`) beside the images, found without a key."""
    for name in MASK_SUBFOLDERS:
        if (root / name).is_dir():
            log.debug("masks for evaluation: %s (data.masks to choose others)", root / name)
            return root / name
    return None


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def is_system_file(path: Path) -> bool:
    """macOS's AppleDouble `._name` companions and other hidden files: never images."""
    return path.name.startswith(".")


def hash_fraction(name: str) -> float:
    """A name's place in [0, 1): the same on every machine and run (sha1, not hash())."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 2**32


def read_tags(path: Path) -> dict[str, list[str]]:
    """{name: [tag, …]} from a CSV (`name,tags`) or JSON tags file, checked line by line."""
    if not path.is_file():
        raise VweError(f"tags file {path} not found; write a CSV with columns name,tags (or a "
                       "JSON {\"name\": [\"tag\", ...]}) and set data.tags")
    raw = _read_json_tags(path) if path.suffix.lower() == ".json" else _read_csv_tags(path)
    tags: dict[str, list[str]] = {}
    for where, name, values in raw:
        if name in tags:
            raise VweError(f"tags file {path}{where}: image '{name}' is listed twice; keep one "
                           "line per image")
        if not values:
            raise VweError(f"tags file {path}{where}: image '{name}' has no tags; image-level "
                           "training needs at least one: tag it or remove the line")
        tags[name] = sorted(set(values))
    if not tags:
        raise VweError(f"tags file {path} lists no images")
    return tags


def _read_csv_tags(path: Path) -> list[tuple[str, str, list[str]]]:
    text = read_text_file(path, "tags file")
    if text.lstrip()[:1] in ("{", "["):
        raise VweError(f"tags file {path} holds JSON, not CSV; rename it to "
                       f"{path.with_suffix('.json').name} (JSON is read by its .json suffix)")
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"name", "tags"} <= set(reader.fieldnames):
            found = ", ".join(reader.fieldnames or []) or "none"
            raise VweError(f"tags file {path} needs the columns name,tags (found "
                           f"{found[:80] + '…' if len(found) > 80 else found})")
        rows = []
        for line, row in enumerate(reader, start=2):
            name = Path((row["name"] or "").strip()).stem
            values = (row["tags"] or "").replace(";", " ").split()
            rows.append((f" line {line}", name, values))
        return rows


def _read_json_tags(path: Path) -> list[tuple[str, str, list[str]]]:
    try:
        data = json.loads(read_text_file(path, "tags file"))
    except json.JSONDecodeError as err:
        raise VweError(f"tags file {path} is not valid JSON ({err})") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise VweError(f"tags file {path} must map each image name to a list of tags")
    return [("", Path(str(name)).stem, [str(tag) for tag in values])
            for name, values in data.items()]


class FolderWriter:
    """Writes the folder format: `<images>/<file>`, the tags file (CSV `name,tags` with `;`
    between tags, or JSON), `classes.txt`, `splits/<split>.txt` and, given, `<masks>/<name>.png`.
    Images are added one by one; `finish` writes the tags, classes and lists."""

    def __init__(self, images: Path, masks: Path | None = None, as_json: bool = False) -> None:
        self.images, self.masks, self.as_json = Path(images), masks, as_json
        self.tags: dict[str, list[str]] = {}

    def add(self, file_name: str, image: bytes, tags: list[str], mask_png: bytes | None) -> None:
        write_bytes_atomic(self.images / file_name, image)
        if self.masks is not None and mask_png is not None:
            write_bytes_atomic(self.masks / f"{Path(file_name).stem}.png", mask_png)
        self.tags[file_name] = list(tags)

    def finish(self, class_names: Sequence[str], splits: dict[str, list[str]]) -> None:
        if self.as_json:
            write_json_atomic(self.images / "tags.json",
                              {Path(f).stem: t for f, t in self.tags.items()}, indent=None)
        else:
            write_text_atomic(self.images / "tags.csv", "name,tags\n" + "".join(
                f"{f},{';'.join(t)}\n" for f, t in self.tags.items()))
        write_text_atomic(self.images / "classes.txt", "".join(f"{c}\n" for c in class_names))
        for split, names in splits.items():
            write_text_atomic(self.images / "splits" / f"{split}.txt",
                              "".join(f"{n}\n" for n in names))


def copy_as_folder(layout: Any, images: Path, masks: Path | None, names: Sequence[str],
                   splits: dict[str, list[str]], as_json: bool = False) -> None:
    """Any dataset layout (VOC, COCO, …) rewritten in the folder format: each image's file and
    mask copied byte for byte, its labels as tags."""
    labels = layout.labels_for(list(names))
    writer = FolderWriter(images, masks, as_json)
    for name in names:
        path = layout.image_path(name)
        mask = layout.mask_path(name) if masks is not None else None
        writer.add(f"{name}{path.suffix}", path.read_bytes(),
                   [layout.class_names[i] for i in np.flatnonzero(labels[name])],
                   mask.read_bytes() if mask is not None and mask.is_file() else None)
    writer.finish(layout.class_names, splits)
