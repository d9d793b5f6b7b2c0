"""`vwe make-dataset`: write the generated dataset (docs/synthetic.md) to `data.root`.

Idempotent: a complete dataset made with the same `synthetic` config is kept (the config is
recorded in `<root>/synthetic.json`, written last); a different config regenerates it. A folder
holding some other dataset is never written into.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from vwe.config import Config
from vwe.data.coco import prepared_dir
from vwe.data.synthetic import RECORD_FILE, existing_summary, generate_dataset
from vwe.errors import VweError

log = logging.getLogger(__name__)

WAIT_SECONDS = 600  # how long ranks other than 0 wait for rank 0's dataset


def _check_not_foreign(root: Path) -> None:
    """Refuse to write into a non-empty folder that this command did not make (e.g. VOC)."""
    if not root.is_dir() or (root / RECORD_FILE).is_file():
        return
    if any(root.iterdir()):
        raise VweError(f"data.root {root} is not empty and holds no {RECORD_FILE}, so it is not "
                       "a generated dataset; point data.root at an empty or generated folder")


def _lists_dir(cfg: Config) -> Path:
    """Where a COCO-format dataset's extra split lists go: the prepared folder's lists."""
    return prepared_dir(cfg.data.root, cfg.data.coco_prepared) / "lists"


def _wait_for_rank0(root: Path, cfg: Config) -> dict:
    """Under torchrun only rank 0 generates; the others wait until the dataset is complete."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        summary = existing_summary(root, cfg.synthetic, _lists_dir(cfg))
        if summary is not None:
            return {**summary, "generated": False}
        time.sleep(1.0)
    raise VweError(f"rank {os.environ.get('RANK')} waited {WAIT_SECONDS}s for rank 0 to write "
                   f"the dataset at {root}; run `vwe make-dataset` once before torchrun")


def run(cfg: Config) -> dict:
    root = Path(cfg.data.root)
    summary = existing_summary(root, cfg.synthetic, _lists_dir(cfg))
    if summary is not None:
        log.info("make-dataset: %s is up to date (%s), kept", root, summary.get("images"))
        return {**summary, "generated": False}
    if int(os.environ.get("RANK", "0")) != 0:
        return _wait_for_rank0(root, cfg)
    _check_not_foreign(root)
    summary = generate_dataset(root, cfg.synthetic, _lists_dir(cfg))
    log.info("make-dataset: %d classes, images %s, %d objects, in %.1fs → %s",
             summary["num_classes"], summary["images"], summary["instances"], summary["seconds"],
             root)
    log.info("make-dataset: context classes (class → background) %s", summary["context_classes"])
    return {**summary, "generated": True}
