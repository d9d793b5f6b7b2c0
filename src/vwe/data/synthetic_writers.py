"""The generated dataset written in each `synthetic.format`: voc, folder or coco
(docs/synthetic.md#formats).

A writer takes the rendered images one by one (`add`), then the split lists (`finish`), and
says whether a dataset at its root is complete (`is_complete`). The images and masks are the
same in every format; only where they go and how the labels are stored differ.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from vwe.data.folder import FolderWriter
from vwe.data.io import encode_label_png, write_bytes_atomic, write_json_atomic, write_text_atomic

VOC_FILES = (("JPEGImages", ".jpg"), ("SegmentationClass", ".png"),
             ("SegmentationClassAug", ".png"), ("Annotations", ".xml"),
             ("SegmentationPart", ".png"))
COCO_SPLIT_FOLDERS = {"train_aug": "train2014", "val": "val2014"}  # test: no COCO annotations
IGNORE_ID = 255


class DatasetWriter(Protocol):
    def add(self, index: int, name: str, image: np.ndarray, mask: np.ndarray,
            objects: list[Any], xml: str, parts: np.ndarray) -> None: ...

    def finish(self, splits: dict[str, list[str]]) -> None: ...

    def is_complete(self, splits: dict[str, list[str]]) -> bool: ...


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=2,
                                optimize=False)
    return buffer.getvalue()


def _lists_match(folder: Path, splits: dict[str, list[str]]) -> bool:
    for split, names in splits.items():
        listed = folder / f"{split}.txt"
        if not listed.is_file() or listed.read_text(encoding="utf-8").split() != names:
            return False
    return True


class VocWriter:
    """VOC 2012 + SBD layout: JPEGImages, SegmentationClass(Aug), Annotations, ImageSets."""

    def __init__(self, root: Path, class_names: list[str], quality: int) -> None:
        self.root, self.class_names, self.quality = root, class_names, quality

    def add(self, index: int, name: str, image: np.ndarray, mask: np.ndarray,
            objects: list[Any], xml: str, parts: np.ndarray) -> None:
        write_bytes_atomic(self.root / "JPEGImages" / f"{name}.jpg",
                           jpeg_bytes(image, self.quality))
        png = encode_label_png(mask)
        write_bytes_atomic(self.root / "SegmentationClass" / f"{name}.png", png)
        write_bytes_atomic(self.root / "SegmentationClassAug" / f"{name}.png", png)
        write_text_atomic(self.root / "Annotations" / f"{name}.xml", xml)
        write_bytes_atomic(self.root / "SegmentationPart" / f"{name}.png",
                           encode_label_png(parts))

    def finish(self, splits: dict[str, list[str]]) -> None:
        for split, names in splits.items():
            write_text_atomic(self.root / "ImageSets" / "Segmentation" / f"{split}.txt",
                              "".join(f"{n}\n" for n in names))
        write_text_atomic(self.root / "classes.txt", "".join(f"{n}\n" for n in self.class_names))

    def is_complete(self, splits: dict[str, list[str]]) -> bool:
        if not (self.root / "classes.txt").is_file() \
                or not _lists_match(self.root / "ImageSets" / "Segmentation", splits):
            return False
        wanted = {name for names in splits.values() for name in names}
        return all(wanted <= {p.stem for p in (self.root / folder).glob(f"*{suffix}")}
                   for folder, suffix in VOC_FILES)


class SyntheticFolderWriter:
    """The folder format: `<root>/<name>.jpg`, tags.csv, classes.txt, splits/, masks/."""

    def __init__(self, root: Path, class_names: list[str], quality: int) -> None:
        self.root, self.class_names, self.quality = root, class_names, quality
        self.writer = FolderWriter(root, root / "masks")

    def add(self, index: int, name: str, image: np.ndarray, mask: np.ndarray,
            objects: list[Any], xml: str, parts: np.ndarray) -> None:
        tags = [self.class_names[c] for c in sorted({o.class_index for o in objects})]
        self.writer.add(f"{name}.jpg", jpeg_bytes(image, self.quality), tags,
                        encode_label_png(mask))

    def finish(self, splits: dict[str, list[str]]) -> None:
        self.writer.finish(self.class_names, splits)

    def is_complete(self, splits: dict[str, list[str]]) -> bool:
        wanted = {name for names in splits.values() for name in names}
        return (self.root / "tags.csv").is_file() and (self.root / "classes.txt").is_file() \
            and _lists_match(self.root / "splits", splits) \
            and wanted <= {p.stem for p in self.root.glob("*.jpg")} \
            and wanted <= {p.stem for p in (self.root / "masks").glob("*.png")}


def coco_name(folder: str, index: int) -> str:
    """The COCO-style name of generated image `index` (image id index + 1, as COCO ids start
    at 1): syn_000000 in train2014 is COCO_train2014_000000000001."""
    return f"COCO_{folder}_{index + 1:012d}"


def category_id(class_index: int) -> int:
    """Even category ids 2, 4, 6, …: gaps on purpose, as COCO's, so the id mapping is used."""
    return 2 * (class_index + 1)


def _band_owner(mask: np.ndarray, objects: list[Any]) -> np.ndarray:
    """Each ignore-band pixel's object: the one it lies on, else its largest-index neighbour
    (a background band pixel always has an object in its 3×3 neighbourhood)."""
    owner = np.full(mask.shape, -1, dtype=np.int64)
    for i, obj in enumerate(objects):
        owner[obj.mask] = i
    padded = np.pad(owner, 1, mode="edge")
    height, width = mask.shape
    neighbour = np.full(mask.shape, -1, dtype=np.int64)
    for dy in range(3):
        for dx in range(3):
            neighbour = np.maximum(neighbour, padded[dy:dy + height, dx:dx + width])
    return np.where(owner >= 0, owner, neighbour)


def _rle_annotation(pixels: np.ndarray, category: int, iscrowd: bool) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(pixels.astype(np.uint8)))
    return {"category_id": category, "segmentation": {"size": [int(s) for s in rle["size"]],
                                                      "counts": rle["counts"].decode("ascii")},
            "area": int(mask_utils.area(rle)),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": int(iscrowd)}


def instance_annotations(mask: np.ndarray, objects: list[Any]) -> list[dict[str, Any]]:
    """Each object's visible pixels outside the ignore band as one instance, and its share of
    the band as a crowd region of its category: with crowd=ignore, prepare-coco paints back
    exactly the VOC mask (the regions are disjoint, so the painting order does not matter)."""
    band = mask == IGNORE_ID
    band_owner = _band_owner(mask, objects)
    annotations = []
    for i, obj in enumerate(objects):
        category = category_id(obj.class_index)
        for pixels, crowd in ((obj.mask & ~band, False), (band & (band_owner == i), True)):
            if pixels.any():
                annotations.append(_rle_annotation(pixels, category, crowd))
    return annotations


class CocoWriter:
    """COCO 2014: train2014/ (the train_aug images), val2014/ (val), instances JSONs with RLE
    segmentations, and the generator's `train` subset as a split list of the prepared folder."""

    def __init__(self, root: Path, class_names: list[str], quality: int,
                 splits: dict[str, list[str]], lists_dir: Path) -> None:
        self.root, self.class_names, self.quality = root, class_names, quality
        self.lists_dir = lists_dir
        self.folder_of = {name: folder for split, folder in COCO_SPLIT_FOLDERS.items()
                          for name in splits[split]}
        self.names: dict[str, str] = {}  # generator name → COCO name
        self.images: dict[str, list[dict[str, Any]]] = {f: [] for f in COCO_SPLIT_FOLDERS.values()}
        self.annotations: dict[str, list[dict[str, Any]]] = {f: [] for f in self.images}
        self.next_id = 1

    def add(self, index: int, name: str, image: np.ndarray, mask: np.ndarray,
            objects: list[Any], xml: str, parts: np.ndarray) -> None:
        folder = self.folder_of.get(name)
        if folder is None:
            return  # a test image: COCO 2014 has no annotations for it
        coco = self.names[name] = coco_name(folder, index)
        write_bytes_atomic(self.root / folder / f"{coco}.jpg", jpeg_bytes(image, self.quality))
        self.images[folder].append({"id": index + 1, "file_name": f"{coco}.jpg",
                                    "height": int(mask.shape[0]), "width": int(mask.shape[1])})
        for annotation in instance_annotations(mask, objects):
            annotation.update(id=self.next_id, image_id=index + 1)
            self.annotations[folder].append(annotation)
            self.next_id += 1

    def finish(self, splits: dict[str, list[str]]) -> None:
        categories = [{"id": category_id(c), "name": name, "supercategory": "synthetic"}
                      for c, name in enumerate(self.class_names)]
        for folder in self.images:
            write_json_atomic(self.root / "annotations" / f"instances_{folder}.json", {
                "info": {"description": "vwe generated dataset"},
                "images": self.images[folder], "annotations": self.annotations[folder],
                "categories": categories}, indent=None)
        write_text_atomic(self.lists_dir / "train.txt",
                          "".join(f"{self.names[n]}\n" for n in splits["train"]))

    def is_complete(self, splits: dict[str, list[str]]) -> bool:
        if not all((self.root / "annotations" / f"instances_{f}.json").is_file()
                   for f in self.images):
            return False
        index = {name: i for i, name in enumerate(n for s in ("train_aug", "val", "test")
                                                  for n in splits[s])}
        wanted = [self.root / f / f"{coco_name(f, index[n])}.jpg"
                  for n, f in self.folder_of.items()]
        train = [coco_name("train2014", index[n]) for n in splits["train"]]
        listed = self.lists_dir / "train.txt"
        return all(p.is_file() for p in wanted) and listed.is_file() \
            and listed.read_text(encoding="utf-8").split() == train
