"""`vwe export-voc-test`: the PASCAL VOC test-server archive
(docs/segmentation.md#test-server-submission).

`results/VOC2012/Segmentation/comp6_test_cls/<id>.png` for every image of the test list: palette
PNGs (mode 'P', VOC colours, ids 0..C) at the JPEG's size, archived as tar.gz. The archive is
written only when every image has a valid prediction (atomically: never a partial archive).
"""

from __future__ import annotations

import io
import logging
import tarfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from vwe.config import Config
from vwe.data.io import atomic_path, encode_label_png, ensure_writable_dir, read_label_map
from vwe.data.voc import open_dataset
from vwe.engine.progress import progress
from vwe.engine.run_dir import RunDir
from vwe.errors import VweError

log = logging.getLogger(__name__)

COMPETITIONS = ("comp5", "comp6")  # comp5: VOC2012 trainval only; comp6: any training data
VARIANTS = ("raw", "crf")
SHOW_NAMES = 5


def member_folder(competition: str) -> str:
    return f"results/VOC2012/Segmentation/{competition}_test_cls"


def prediction_folder(cfg: Config) -> Path:
    return RunDir(cfg).export_predictions / cfg.export.variant


def archive_path(cfg: Config) -> Path:
    return RunDir(cfg).export_archive


def check_complete(names: list[str], folder: Path, split: str) -> None:
    """Every listed image needs a prediction; else a VweError naming how many and which."""
    missing = [n for n in names if not RunDir.label_file(folder, n).is_file()]
    if missing:
        raise VweError(f"{len(missing)} of {len(names)} {split} images have no prediction in "
                       f"{folder} (first: {', '.join(missing[:SHOW_NAMES])}); run `vwe "
                       f"infer-seg infer_seg.split={split}` (it resumes); no archive written")


def submission_png(path: Path, image_path: Path, num_classes: int) -> bytes:
    """A prediction re-encoded as a VOC palette PNG, checked against its JPEG and the classes."""
    with Image.open(image_path) as image:
        width, height = image.size
    label = read_label_map(path, (height, width), num_classes, "prediction",
                           "the server needs full-size predictions: rerun `vwe infer-seg "
                           "--overwrite`")
    return encode_label_png(label)


def _add(tar: tarfile.TarFile, name: str, data: bytes | None, mtime: float) -> None:
    """A folder (data None) or a file member, owned by nobody in particular."""
    info = tarfile.TarInfo(name)
    info.mtime = int(mtime)
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))


def run(cfg: Config) -> dict[str, Any]:
    """Check the predictions of `export.split` and write the tar.gz for the server."""
    layout = open_dataset(cfg.data)
    names = layout.read_split(cfg.export.split)
    folder = prediction_folder(cfg)
    check_complete(names, folder, cfg.export.split)
    archive = archive_path(cfg)
    ensure_writable_dir(archive.parent, "export.archive")
    inside = member_folder(cfg.export.competition)
    now = time.time()
    with atomic_path(archive) as tmp, tarfile.open(tmp, "w:gz") as tar:
        parts = inside.split("/")
        for depth in range(1, len(parts) + 1):
            _add(tar, "/".join(parts[:depth]), None, now)
        for name in progress(names, desc="export-voc-test"):
            data = submission_png(RunDir.label_file(folder, name), layout.image_path(name),
                                  layout.num_classes + 1)
            _add(tar, f"{inside}/{name}.png", data, now)
    log.info("export-voc-test: %d predictions (%s) in %s; upload it at "
             "http://host.robots.ox.ac.uk:8080/", len(names), cfg.export.variant, archive)
    return {"archive": str(archive), "images": len(names), "folder": inside,
            "variant": cfg.export.variant}
