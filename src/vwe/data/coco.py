"""The MS COCO 2014 format (`data.format=coco`, docs/formats.md#ms-coco-2014).

`data.root` holds `train2014/`, `val2014/` (JPEGs named as COCO names them,
`COCO_train2014_000000000009.jpg`; the name is the file stem) and
`annotations/instances_{train,val}2014.json`. `vwe prepare-coco` (stages/prepare_coco.py) turns
the instances into what every stage reads: palette PNG masks with contiguous class ids, the
split lists and the image-level labels as JSON, under `data.coco_prepared` (default
`<root>/vwe_prepared`). `CocoLayout` reads those and offers the interface of `VocLayout`, so
every stage opens it through `voc.open_dataset`. The rules (id mapping, painting order, crowd
modes) are docs/formats.md#ms-coco-2014's.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vwe.data.io import read_json
from vwe.data.layout import DatasetLayout, read_name_list
from vwe.engine.records import Record, differences, file_identity
from vwe.errors import VweError

COCO_FOLDERS = ("train2014", "val2014")  # image folders; split lists of the same names
TRAIN_SPLITS = ("train", "train_aug")  # both mean train2014's annotated images
CROWD_MODES = ("background", "ignore", "label")
IGNORE_ID = 255
PREPARED_DIR = "vwe_prepared"
LABELS_FILE = "labels.json"  # written last by prepare-coco: its presence marks a finished run
PREPARE_VERSION = 1  # raise when the prepared files change meaning
REQUIRED_KEYS = ("images", "annotations", "categories")


def instances_path(root: str | Path, folder: str) -> Path:
    return Path(root) / "annotations" / f"instances_{folder}.json"


def prepared_dir(root: str | Path, prepared: str = "") -> Path:
    """Where prepare-coco writes (data.coco_prepared, else <root>/vwe_prepared)."""
    return Path(prepared) if prepared else Path(root) / PREPARED_DIR


def prepare_record(root: str | Path, crowd: str) -> Record:
    """What the prepared files depend on: the crowd mode and the two instances JSONs' bytes."""
    inputs = {path.name: file_identity(path)
              for path in (instances_path(root, folder) for folder in COCO_FOLDERS)}
    return Record("prepare_coco", {"data.coco_crowd": crowd}, inputs, PREPARE_VERSION)


def load_instances(path: Path) -> dict[str, Any]:
    """An instances JSON, checked for the three lists every COCO file has; VweError if not."""
    if not path.is_file():
        raise VweError(f"COCO annotations {path} not found; put instances_train2014.json and "
                       "instances_val2014.json under <data.root>/annotations/")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            data = read_json(path)
    except VweError:
        raise VweError(f"COCO annotations {path} are not valid JSON; download and extract "
                       "annotations_trainval2014.zip again") from None
    missing = [key for key in REQUIRED_KEYS
               if not isinstance(data, dict) or not isinstance(data.get(key), list)]
    if missing:
        raise VweError(f"COCO annotations {path} lack the list '{missing[0]}' (a COCO instances "
                       "file has images, annotations and categories); use the instances_*.json "
                       "of the COCO release")
    return data


def contiguous_ids(categories: Sequence[dict[str, Any]]) -> tuple[list[str], dict[int, int]]:
    """Class names and category id → 1..K in ascending id order (COCO's 1..90 have gaps)."""
    ordered = sorted(categories, key=lambda cat: int(cat["id"]))
    return [str(cat["name"]) for cat in ordered], {int(cat["id"]): i + 1
                                                  for i, cat in enumerate(ordered)}


@dataclass(frozen=True)
class InstanceMask:
    """One annotation as the painter needs it: contiguous class id, crowd flag, area, shape."""

    label: int
    iscrowd: bool
    area: float
    segmentation: Any  # polygons, uncompressed or compressed RLE, as in the JSON


def annotation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(H, W) bool of one annotation, decoded the way pycocotools' annToMask does."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):  # polygons: one RLE each, merged
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE (crowd regions)
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)


def semantic_mask(height: int, width: int, instances: Sequence[InstanceMask],
                  crowd: str = "background") -> np.ndarray:
    """(H, W) uint8: annotations by area ascending, first painted wins, so small objects stay
    on top; crowd regions left out (background), 255 (ignore) or their class (label)."""
    if crowd not in CROWD_MODES:
        raise VweError(f"data.coco_crowd={crowd} is unknown; use {' | '.join(CROWD_MODES)}")
    label = np.zeros((height, width), dtype=np.uint8)
    painted = np.zeros((height, width), dtype=bool)
    for instance in sorted(instances, key=lambda inst: inst.area):  # stable: JSON order on ties
        if instance.iscrowd and crowd == "background":
            continue
        value = IGNORE_ID if instance.iscrowd and crowd == "ignore" else instance.label
        pixels = annotation_mask(instance.segmentation, height, width) & ~painted
        label[pixels] = value
        painted |= pixels
    return label


class CocoLayout(DatasetLayout):
    """Images, labels and masks of a COCO 2014 root as prepare-coco left them (module docstring)."""

    def __init__(self, root: str | Path, prepared: str = "", crowd: str = "background") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise VweError(f"COCO root {self.root} not found; set data.root to the folder holding "
                           "train2014/, val2014/ and annotations/")
        self.prepared = prepared_dir(self.root, prepared)
        self.crowd = crowd
        data = self._read_prepared()
        self.class_names = [str(name) for name in data["class_names"]]
        self.files = {str(k): str(v) for k, v in data["files"].items()}
        self.labels = {str(k): [int(i) for i in v] for k, v in data["labels"].items()}

    def _read_prepared(self) -> dict[str, Any]:
        path = self.prepared / LABELS_FILE
        if not path.is_file():
            raise VweError(f"{path} not found: the COCO masks and labels of {self.root} are not "
                           f"prepared; run `vwe prepare-coco` (data.coco_crowd={self.crowd})")
        data = read_json(path)
        wanted = prepare_record(self.root, self.crowd).to_json()
        if not isinstance(data, dict) or data.get("record") != wanted:
            found = data.get("record") if isinstance(data, dict) else None
            changed = "; ".join(differences(found or {}, wanted)[:3])
            raise VweError(f"{self.prepared} is stale ({changed}); run `vwe prepare-coco` "
                           "to redo it for these annotations and data.coco_crowd")
        return data

    @property
    def list_dir(self) -> Path:
        return self.prepared / "lists"

    def read_split(self, split: str) -> list[str]:
        """A list file of the prepared folder (train2014, val2014, or a user's such as
        val_part); `train`/`train_aug` and `val` without a file of that name mean the two
        folders' annotated images."""
        path = self.list_dir / f"{split}.txt"
        if not path.is_file():
            folder = "train2014" if split in TRAIN_SPLITS else "val2014" if split == "val" else ""
            if not folder:
                raise VweError(f"split list {path} not found; COCO splits are train (train_aug), "
                               "val, or a list file you place in that folder")
            path = self.list_dir / f"{folder}.txt"
        names = read_name_list(path)
        unknown = [name for name in names if name not in self.files]
        if unknown:
            raise VweError(f"split list {path} names '{unknown[0]}', which is no annotated image "
                           f"of the prepared COCO folders ({len(unknown)} unknown); fix the list")
        if not names:
            raise VweError(f"split list {path} is empty; list one image name per line")
        return names

    def image_path(self, name: str) -> Path:
        if name not in self.files:
            raise VweError(f"image '{name}' is in neither instances JSON of {self.root}")
        return self.root / self.files[name]

    def label_source(self, name: str) -> Path:
        """Where the image's labels come from (named in messages): its instances JSON."""
        folder = self.files[name].split("/")[0] if name in self.files else COCO_FOLDERS[0]
        return instances_path(self.root, folder)

    def mask_path(self, name: str) -> Path:
        return self.prepared / "masks" / f"{name}.png"

    def has_masks(self, names: list[str]) -> bool:
        return any(self.mask_path(name).is_file() for name in names)

    def masks_where(self) -> str:
        return str(self.prepared / "masks")

    def labels_for(self, names: list[str]) -> dict[str, np.ndarray]:
        out = {}
        for name in names:
            if name not in self.labels:
                raise VweError(f"image '{name}' has no labels in {self.prepared / LABELS_FILE}; "
                               "run `vwe prepare-coco`")
            vector = np.zeros(self.num_classes, dtype=np.float32)
            vector[self.labels[name]] = 1.0
            out[name] = vector
        return out


