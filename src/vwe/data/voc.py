"""The PASCAL VOC 2012 + SBD layout, read the same way for VOC and for the generated dataset.

Layout (docs/synthetic.md, docs/refinement.md#data-conventions): `JPEGImages/<name>.jpg`,
`SegmentationClassAug/` or `SegmentationClass/<name>.png`, `Annotations/<name>.xml`,
`ImageSets/Segmentation/<split>.txt`, optional `classes.txt` (else the 20 VOC classes).
Image-level labels come from the XML `<object><name>` tags, as IRNet's `make_cls_labels.py` does,
and are cached as plain JSON (never a pickle) next to the split lists.
"""

from __future__ import annotations

import hashlib
import logging
import random
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vwe.config import DataConfig
from vwe.data.coco import CocoLayout
from vwe.data.folder import FolderLayout
from vwe.data.io import (
    image_size,
    read_image,
    read_json,
    read_label_png,
    read_text_file,
    user_cache_dir,
    write_json_atomic,
    write_text_atomic,
)
from vwe.data.layout import DatasetLayout, read_name_list
from vwe.data.transforms import TrainTransform
from vwe.errors import VweError

log = logging.getLogger(__name__)

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
IGNORE_ID = 255
LABELS_CACHE = "cls_labels.json"
_CACHE_VERSION = 2  # 2: a (size, mtime_ns) stamp per XML
_REPORT_NAMES = 20  # names listed per kind of missing file in the prepare_voc report


class VocLayout(DatasetLayout):
    """Paths, split lists, class names, image-level labels and masks of one VOC-style root."""

    def __init__(self, root: str | Path, mask_dir: str = "SegmentationClassAug",
                 cache_dir: str | Path | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise VweError(f"dataset root {self.root} not found; set data.root to a VOC-layout "
                           "folder or run `vwe make-dataset` to generate one")
        self.mask_dir = mask_dir
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.class_names = self._read_class_names()

    @property
    def list_dir(self) -> Path:
        return self.root / "ImageSets" / "Segmentation"

    def _read_class_names(self) -> list[str]:
        path = self.root / "classes.txt"
        if not path.is_file():
            return list(VOC_CLASSES)
        names = [line.strip() for line in read_text_file(path, "class list").splitlines()]
        names = [name for name in names if name]
        if not names or len(set(names)) != len(names):
            raise VweError(f"{path} must list distinct class names, one per line, "
                           "background excluded")
        return names

    def list_path(self, split: str) -> Path:
        return self.list_dir / f"{split}.txt"

    def read_split(self, split: str) -> list[str]:
        """Image names of a split, as strings (VOC names such as 2007_000032 are not integers)."""
        path = self.list_path(split)
        if not path.is_file():
            raise VweError(f"split list {path} not found; check data.root and the split name "
                           "(for VOC train_aug run `vwe prepare-voc`)")
        names = read_name_list(path)
        if not names:
            raise VweError(f"split list {path} is empty; list one image name per line")
        return names

    def image_path(self, name: str) -> Path:
        return self.root / "JPEGImages" / f"{name}.jpg"

    def xml_path(self, name: str) -> Path:
        return self.root / "Annotations" / f"{name}.xml"

    def label_source(self, name: str) -> Path:
        """Where the image's labels come from (named in messages): its XML."""
        return self.xml_path(name)

    def mask_path(self, name: str) -> Path:
        """The preferred mask folder's file, else SegmentationClass's when that one exists."""
        preferred = self.root / self.mask_dir / f"{name}.png"
        fallback = self.root / "SegmentationClass" / f"{name}.png"
        return fallback if not preferred.is_file() and fallback.is_file() else preferred

    def has_masks(self, names: list[str]) -> bool:
        """Whether any listed image has a mask (none: a split without ground truth)."""
        return any(self.mask_path(name).is_file() for name in names)

    def masks_where(self) -> str:
        return str(self.root / self.mask_dir)

    def read_parts(self, name: str) -> np.ndarray | None:
        """The generator's part map (`SegmentationPart/`, docs/synthetic.md#part-masks), read
        only by the part-level diagnostics; None where there is none (VOC itself)."""
        path = self.root / "SegmentationPart" / f"{name}.png"
        return read_label_png(path) if path.is_file() else None

    def read_checked_mask(self, name: str) -> np.ndarray:
        """The mask, checked against its image's size (read from the image header, when the image
        is there): a mask of another size is the mask's fault, not the CAMs' or predictions'."""
        image = self.image_path(name)
        return self.read_mask(name, image_size=image_size(image) if image.is_file() else None)

    def parse_xml_labels(self, name: str) -> list[int]:
        """Sorted class indices of every `<object><name>` in the image's XML (difficult too)."""
        path = self.xml_path(name)
        if not path.is_file():
            raise VweError(f"annotation {path} not found; restore it or remove '{name}' from "
                           "the split list")
        try:
            tree = ET.parse(path)
        except ET.ParseError as err:
            raise VweError(f"annotation {path} is not valid XML ({err}); restore it") from None
        index = {class_name: i for i, class_name in enumerate(self.class_names)}
        found = set()
        for obj in tree.getroot().iter("object"):
            class_name = (obj.findtext("name") or "").strip()
            if class_name not in index:
                raise VweError(f"annotation {path} names unknown class '{class_name}'; known: "
                               f"{', '.join(self.class_names)} (edit {self.root}/classes.txt)")
            found.add(index[class_name])
        if not found:
            raise VweError(f"image '{name}' has no labelled object in {path}; image-level "
                           "training needs at least one: drop it from the split list")
        return sorted(found)

    def labels_for(self, names: list[str]) -> dict[str, np.ndarray]:
        """Multi-hot float32 (C,) labels for names, through the JSON cache.

        Each cached entry carries its XML's (size, mtime_ns): an XML edited in place, added or
        replaced is parsed again, so the labels always follow the annotation files.
        """
        cache = self._load_cache()
        fresh: dict[str, list[int]] = {}
        changed = False
        for name in names:
            stamp = self._xml_stamp(name)
            entry = cache.get(name)
            if entry is None or entry.get("stamp") != stamp:
                cache[name] = {"labels": self.parse_xml_labels(name), "stamp": stamp}
                changed = True
            fresh[name] = cache[name]["labels"]
        if changed:
            self._save_cache(cache)
        out = {}
        for name in names:
            vector = np.zeros(self.num_classes, dtype=np.float32)
            vector[fresh[name]] = 1.0
            out[name] = vector
        return out

    def _xml_stamp(self, name: str) -> list[int]:
        """(size, mtime_ns) of the image's XML; [-1, -1] when it is missing (parsing says so)."""
        try:
            stat = self.xml_path(name).stat()
        except OSError:
            return [-1, -1]
        return [stat.st_size, stat.st_mtime_ns]

    def _cache_paths(self) -> list[Path]:
        """Where the labels cache may live: beside the lists, then a per-root user cache."""
        digest = hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:12]
        fallback = (self.cache_dir or user_cache_dir()) / f"cls_labels-{digest}.json"
        return [self.list_dir / LABELS_CACHE, fallback]

    def _cache_stamp(self) -> dict[str, Any]:
        return {"version": _CACHE_VERSION, "class_names": self.class_names}

    def _load_cache(self) -> dict[str, dict[str, Any]]:
        stamp = self._cache_stamp()
        for path in self._cache_paths():
            if not path.is_file():
                continue
            try:
                data = read_json(path)
            except VweError:
                continue
            if isinstance(data, dict) and all(data.get(k) == v for k, v in stamp.items()):
                return {str(k): {"labels": [int(i) for i in v["labels"]],
                                 "stamp": [int(i) for i in v["stamp"]]}
                        for k, v in data.get("labels", {}).items()}
        return {}

    def _save_cache(self, labels: dict[str, dict[str, Any]]) -> None:
        data = {**self._cache_stamp(), "labels": labels}
        for path in self._cache_paths():
            try:
                write_json_atomic(path, data, indent=None)
                return
            except OSError:
                continue
        log.warning("could not write the labels cache anywhere; labels are re-read each run")


def open_dataset(data: DataConfig) -> VocLayout | FolderLayout | CocoLayout:
    """The dataset `data` describes: the one call through which every stage opens it."""
    if data.format == "coco":
        return CocoLayout(data.root, data.coco_prepared, data.coco_crowd)
    if data.format == "folder":
        return FolderLayout(data.root, data.tags, data.masks, data.classes, data.val_fraction,
                            data.negatives)
    return VocLayout(data.root, data.mask_dir)


def sample_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The per-sample rng: a pure function of (seed, epoch, index), so workers don't matter."""
    return random.Random(f"vwe-sample:{seed}:{epoch}:{index}")  # str seeds hash with SHA-512


class EpochSeededDataset(Dataset):
    """Named images whose augmentation is seeded by (seed, epoch, index): the same for any
    worker count and after a resume. Subclasses set `names` and `seed`; call `set_epoch` before
    each epoch (before the DataLoader iterator is made, so workers get it)."""

    names: list[str]
    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.names)


class ClassificationDataset(EpochSeededDataset):
    """Images with multi-hot labels under the authors' training augmentation (CAM/IRN training).

    Call `set_epoch` before each epoch (before the DataLoader iterator is made, so workers get
    it): the augmentation of sample i in epoch e is then reproducible, also after a resume.
    """

    def __init__(self, layout: VocLayout, split: str, transform_cfg: Any, seed: int = 0) -> None:
        self.layout = layout
        self.names = layout.read_split(split)
        self.labels = layout.labels_for(self.names)
        self.transform = TrainTransform.from_config(transform_cfg)
        self.seed = seed
        self.epoch = 0

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = self.names[index]
        image = read_image(self.layout.image_path(name))
        chw = self.transform(image, sample_rng(self.seed, self.epoch, index))
        return {"image": torch.from_numpy(chw), "label": torch.from_numpy(self.labels[name]),
                "name": name}


class InferenceDataset(Dataset):
    """Raw uint8 HWC images with their labels, for multi-scale CAM inference (no transform)."""

    def __init__(self, layout: VocLayout, split: str, with_labels: bool = True) -> None:
        self.layout = layout
        self.names = layout.read_split(split)
        self.labels = layout.labels_for(self.names) if with_labels else None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = self.names[index]
        item: dict[str, Any] = {"image": read_image(self.layout.image_path(name)), "name": name}
        if self.labels is not None:
            item["label"] = self.labels[name]
        return item


def _sbd_names(layout: VocLayout, sbd_root: str | Path | None) -> tuple[set[str], str]:
    """SBD train ∪ val from `<sbd>/train.txt`+`val.txt`, else from an existing train_aug.txt."""
    if sbd_root:
        sbd = Path(sbd_root)
        lists = [sbd / "train.txt", sbd / "val.txt"]
        for path in lists:
            if not path.is_file():
                raise VweError(f"SBD list {path} not found; data.sbd_root must be the SBD "
                               "'dataset' folder holding train.txt and val.txt")
        return set(read_name_list(lists[0])) | set(read_name_list(lists[1])), str(sbd)
    existing = layout.list_path("train_aug")
    if existing.is_file():
        return set(read_name_list(existing)), str(existing)
    raise VweError(f"no SBD lists: set data.sbd_root to the SBD 'dataset' folder (with "
                   f"train.txt, val.txt) or place train_aug.txt at {existing}")


def prepare_voc(voc_root: str | Path, sbd_root: str | Path | None = None,
                mask_dir: str = "SegmentationClassAug") -> dict[str, Any]:
    """Write train_aug.txt = (SBD train ∪ SBD val ∪ VOC train) − VOC val and the labels cache.

    Reports the list sizes and the listed images that lack a JPEG, a mask or an XML; labels are
    cached for every listed image that has an XML.
    """
    layout = VocLayout(voc_root, mask_dir=mask_dir)
    voc_train, voc_val = set(layout.read_split("train")), set(layout.read_split("val"))
    sbd, source = _sbd_names(layout, sbd_root)
    train_aug = sorted((sbd | voc_train) - voc_val)
    if not train_aug:
        raise VweError(f"train_aug would be empty: every image of SBD ({source}) and of "
                       f"{layout.list_path('train')} is also in {layout.list_path('val')}; "
                       "val must hold other images than train (nothing was written)")
    write_text_atomic(layout.list_path("train_aug"), "".join(f"{n}\n" for n in train_aug))
    listed = sorted(set(train_aug) | voc_val)
    missing_jpeg = [n for n in listed if not layout.image_path(n).is_file()]
    missing_mask = [n for n in listed if not layout.mask_path(n).is_file()]
    missing_xml = [n for n in listed if not layout.xml_path(n).is_file()]
    has_xml = set(listed) - set(missing_xml)
    layout.labels_for([n for n in listed if n in has_xml])
    report = {
        "train_aug": len(train_aug), "voc_train": len(voc_train), "voc_val": len(voc_val),
        "sbd": len(sbd), "sbd_source": source, "num_classes": layout.num_classes,
        "list": str(layout.list_path("train_aug")),
    }
    for kind, names in (("jpeg", missing_jpeg), ("mask", missing_mask), ("xml", missing_xml)):
        report[f"num_missing_{kind}"] = len(names)
        report[f"missing_{kind}"] = names[:_REPORT_NAMES]
        if names:
            log.warning("%d listed images lack a %s, e.g. %s", len(names), kind,
                        ", ".join(names[:5]))
    return report
