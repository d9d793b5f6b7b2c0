"""`vwe prepare-coco`: make a COCO 2014 root ready for the pipeline (docs/formats.md#ms-coco-2014).

Reads `annotations/instances_{train,val}2014.json` with pycocotools and writes, under
`data.coco_prepared` (default `<root>/vwe_prepared`):
- `masks/<name>.png`: the semantic mask of every annotated image (contiguous ids 1..K, small
  objects on top, crowd regions as `data.coco_crowd` says), palette PNGs written atomically by
  `data.num_workers` processes;
- `lists/train2014.txt`, `lists/val2014.txt`: the annotated images (82,081 / 40,137 for COCO);
- `labels.json`, last: class names, each image's file and multi-hot labels, and the record.
Resumable: `record.json` holds the crowd mode and the JSONs' content hashes; a mask already
written under the same record is kept, a changed record clears the folder first.
"""

from __future__ import annotations

import contextlib
import io
import logging
import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vwe.config import Config
from vwe.data.coco import (
    COCO_FOLDERS,
    LABELS_FILE,
    InstanceMask,
    contiguous_ids,
    instances_path,
    load_instances,
    prepare_record,
    prepared_dir,
    semantic_mask,
)
from vwe.data.io import save_label_png, write_json_atomic, write_text_atomic
from vwe.engine.progress import progress
from vwe.engine.records import clear_outputs, needs_clearing, write_record
from vwe.errors import VweError

log = logging.getLogger(__name__)

OWN_FILES = ("masks/*.png", LABELS_FILE, "lists/train2014.txt", "lists/val2014.txt")


@dataclass(frozen=True)
class MaskTask:
    """One image's mask, picklable for the worker processes."""

    height: int
    width: int
    instances: tuple[InstanceMask, ...]
    crowd: str
    out_path: Path


@dataclass
class CocoImages:
    """The annotated images of one instances JSON: name → file, size, annotations, labels."""

    folder: str
    files: dict[str, str]
    sizes: dict[str, tuple[int, int]]
    instances: dict[str, list[InstanceMask]]
    labels: dict[str, list[int]]


def index_images(root: Path, folder: str, data: dict[str, Any],
                 label_of: dict[int, int]) -> CocoImages:
    """The images of `data` with at least one annotation, sorted by name, through pycocotools."""
    from pycocotools.coco import COCO

    path = instances_path(root, folder)
    coco = COCO()
    coco.dataset = data
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            coco.createIndex()
    except (KeyError, TypeError) as err:
        raise VweError(f"COCO annotations {path} have an entry without the field {err}; use "
                       "the instances_*.json of the COCO release") from None
    out = CocoImages(folder, {}, {}, {}, {})
    for image_id in sorted(coco.imgToAnns, key=lambda i: coco.imgs[i]["file_name"]):
        image = coco.imgs[image_id]
        name = Path(image["file_name"]).stem
        if name in out.files:
            raise VweError(f"COCO annotations {path} list two images named '{name}'; keep one")
        anns = coco.imgToAnns[image_id]
        unknown = [a["category_id"] for a in anns if a["category_id"] not in label_of]
        if unknown:
            raise VweError(f"COCO annotations {path}: an annotation of image '{name}' has "
                           f"category_id {unknown[0]}, not in the categories list")
        out.files[name] = f"{folder}/{image['file_name']}"
        out.sizes[name] = (int(image["height"]), int(image["width"]))
        out.instances[name] = [InstanceMask(label_of[a["category_id"]], bool(a.get("iscrowd")),
                                            float(a["area"]), a["segmentation"]) for a in anns]
        out.labels[name] = sorted({label_of[a["category_id"]] - 1 for a in anns})
    return out


def check_images_exist(root: Path, images: CocoImages) -> None:
    """Every annotated image's file is there, else one line with the count and the first."""
    missing = [rel for rel in images.files.values() if not (root / rel).is_file()]
    if missing:
        raise VweError(f"{len(missing)} of {len(images.files)} images listed in "
                       f"{instances_path(root, images.folder)} are missing, the first "
                       f"{root / missing[0]}; extract {images.folder}.zip into {root} "
                       "(nothing was written)")


def read_coco(root: Path) -> tuple[list[str], list[CocoImages]]:
    """Both instances JSONs, checked before anything is written: class names and images."""
    sets = {folder: load_instances(instances_path(root, folder)) for folder in COCO_FOLDERS}
    class_names, label_of = contiguous_ids(sets[COCO_FOLDERS[0]]["categories"])
    for folder, data in sets.items():
        if contiguous_ids(data["categories"]) != (class_names, label_of):
            raise VweError(f"{instances_path(root, folder)} lists other categories than "
                           f"{instances_path(root, COCO_FOLDERS[0])}; both must be of one release")
    images = [index_images(root, folder, data, label_of) for folder, data in sets.items()]
    for found in images:
        check_images_exist(root, found)
    return class_names, images


def make_mask(task: MaskTask) -> Path:
    save_label_png(task.out_path, semantic_mask(task.height, task.width, task.instances,
                                                task.crowd))
    return task.out_path


def run_tasks(tasks: list[MaskTask], num_workers: int) -> Iterator[Path]:
    """Masks in completion order, from a spawned process pool (or in process for 0 workers)."""
    if num_workers <= 0 or len(tasks) <= 1:
        yield from map(make_mask, tasks)
        return
    with multiprocessing.get_context("spawn").Pool(min(num_workers, len(tasks))) as pool:
        yield from pool.imap_unordered(make_mask, tasks, chunksize=16)


def run(cfg: Config) -> dict:
    data = cfg.data
    root = Path(data.root)
    if not root.is_dir():
        raise VweError(f"COCO root {root} not found; set data.root to the folder holding "
                       "train2014/, val2014/ and annotations/")
    class_names, image_sets = read_coco(root)
    out = prepared_dir(root, data.coco_prepared)
    record = prepare_record(root, data.coco_crowd)
    overwrite = "always" if cfg.overwrite == "always" else "changed"  # never stale: redo it
    has_outputs = any(next(out.glob(p), None) is not None for p in OWN_FILES)
    if needs_clearing(out, record, overwrite, "prepare-coco", has_outputs):
        log.info("prepare-coco: removed %d earlier files", clear_outputs([out], OWN_FILES))
    out.mkdir(parents=True, exist_ok=True)
    write_record([out], record)
    tasks = [MaskTask(*images.sizes[name], tuple(images.instances[name]), data.coco_crowd,
                      out / "masks" / f"{name}.png")
             for images in image_sets for name in images.files]
    todo = [task for task in tasks if not task.out_path.is_file()]
    if len(todo) < len(tasks):
        log.info("prepare-coco: %d of %d masks already written with these settings, resuming",
                 len(tasks) - len(todo), len(tasks))
    for _ in progress(run_tasks(todo, data.num_workers), total=len(todo), desc="prepare-coco"):
        pass
    for images in image_sets:
        write_text_atomic(out / "lists" / f"{images.folder}.txt",
                          "".join(f"{name}\n" for name in images.files))
    write_json_atomic(out / LABELS_FILE, {
        "record": record.to_json(), "class_names": class_names,
        "files": {k: v for images in image_sets for k, v in images.files.items()},
        "labels": {k: v for images in image_sets for k, v in images.labels.items()},
    }, indent=None)
    counts = {images.folder: len(images.files) for images in image_sets}
    log.info("prepare-coco: %d classes, annotated images %s, %d masks written, crowd as %s → %s",
             len(class_names), counts, len(todo), data.coco_crowd, out)
    return {"prepared": str(out), "num_classes": len(class_names), "images": counts,
            "computed": len(todo), "crowd": data.coco_crowd}
