"""`vwe prepare-voc`: make a PASCAL VOC 2012 (+ SBD) folder ready for the pipeline.

Writes `ImageSets/Segmentation/train_aug.txt` = (SBD train ∪ SBD val ∪ VOC train) − VOC val
(10,582 images for the standard release) and the image-level labels cache `cls_labels.json`
(from the XML annotations, JSON instead of IRNet's pickled `cls_labels.npy`).
"""

from __future__ import annotations

import logging

from vwe.config import Config
from vwe.data.voc import prepare_voc

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict:
    report = prepare_voc(cfg.data.root, cfg.data.sbd_root or None, mask_dir=cfg.data.mask_dir)
    log.info("prepare-voc: train_aug %d images (SBD %d from %s, VOC train %d, minus VOC val %d), "
             "%d classes → %s", report["train_aug"], report["sbd"], report["sbd_source"],
             report["voc_train"], report["voc_val"], report["num_classes"], report["list"])
    log.info("prepare-voc: listed images lacking a JPEG %d, a mask %d, an XML %d",
             report["num_missing_jpeg"], report["num_missing_mask"], report["num_missing_xml"])
    return report
