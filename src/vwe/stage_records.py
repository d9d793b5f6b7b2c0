"""What each stage's output depends on: the pipeline's dependency graph, in one place.

`stage_record(cfg, stage)` is the record a stage would write under `cfg`: the config keys that
change its files and the identities of its inputs (checkpoint hashes, upstream records' digests).
A downstream record holds its upstream's digest, so a changed key reruns the stage it belongs to
and, through the chain, every later one (docs/pipeline.md#records). Keys that only steer how a
run proceeds (resume, stop_at_step, checkpoint and log cadence, worker counts) are left out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vwe.config import Config
from vwe.data.voc import open_dataset
from vwe.engine.records import (
    RUN_CONTROL,
    Record,
    digest_of,
    file_identity,
    flat_settings,
    folder_identity,
    require_current,
)
from vwe.engine.run_dir import RunDir
from vwe.engine.weights import resolve_generated
from vwe.inference.thresholds import CLASS_POWER, auto_rule, calibration_names, is_auto


def _training_exclude(section: str, cfg: Config | None = None) -> list[str]:
    """Keys that do not change the weights, and `steps` while 0 (a key added later: records
    written before it stay current)."""
    unset = [f"{section}.steps"] if cfg is not None and not getattr(cfg, section).steps else []
    return [f"{section}.{key}" for key in RUN_CONTROL] + unset


def dataset_identity(cfg: Config) -> str:
    """The dataset root, resolved (per-image files depend on the images they came from)."""
    return str(Path(cfg.data.root).resolve())


def labels_identity(cfg: Config, split: str) -> str:
    """Digest of a split's names and image-level labels (an edited XML changes it)."""

    layout = open_dataset(cfg.data)
    labels = layout.image_labels(split)
    return digest_of({"classes": layout.class_names,
                      "labels": {name: vector.nonzero()[0].tolist()
                                 for name, vector in labels.items()}})


def masks_identity(cfg: Config) -> str:
    """Where the evaluation's masks come from (data.masks given later must rescore)."""
    return str(open_dataset(cfg.data).masks_where())


def weights_identity(spec: str) -> dict[str, str]:
    """A local weights file's content hash (a file replaced in place must rerun its users);
    nothing for imagenet / none / coco."""
    return {} if spec in ("imagenet", "none", "coco", "") else \
        {"pretrained": file_identity(Path(spec))}


def _train_cam(cfg: Config, run: RunDir) -> Record:
    settings = flat_settings(cfg, ["seed", "data.train_list", "model", "train_cam"],
                             _training_exclude("train_cam", cfg))
    return Record("train_cam", settings, {"dataset": dataset_identity(cfg),
                                          "labels": labels_identity(cfg, cfg.data.train_list),
                                          **weights_identity(
                                              resolve_generated(cfg).model.pretrained)})


def _at_default(key: str, value: bool) -> list[str]:
    """`key` left out of a digest while it has its default (`value` True): a key added later
    keeps the records written before it current (docs/pipeline.md#trained-scale)."""
    return [key] if value else []


def _make_cam(cfg: Config, run: RunDir) -> Record:
    settings = flat_settings(cfg, ["cam"], ["cam.split", "cam.checkpoint", "cam.batch_images",
                                            *_at_default("cam.trained_scale",
                                                         cfg.cam.trained_scale)])
    return Record("make_cam", settings, {"dataset": dataset_identity(cfg),
                                         "checkpoint": file_identity(run.cam_checkpoint)})


def auto_identity(cfg: Config, split: str, *values: Any) -> dict[str, str]:
    """What an `auto` value depends on beyond the settings (docs/method.md#auto-thresholds):
    the rule that chooses it, so another vwe rule chooses again, and where it is calibrated on
    a handful of labelled images (only some of the split have masks), which masks, as they are
    now, so a mask added or edited chooses again. Nothing without `auto`: those records stay
    as they were."""
    if not any(is_auto(value) for value in values):
        return {}
    layout = open_dataset(cfg.data)
    names = layout.read_split(split)
    labelled = calibration_names(layout.masked_names(names), names)
    calibration = {"calibration": digest_of([(name, file_identity(layout.mask_path(name)))
                                             for name in labelled])} if labelled else {}
    return {"auto_rule": auto_rule(), **calibration}


def _eval_cam(cfg: Config, run: RunDir) -> Record:
    return Record("eval_cam", flat_settings(cfg, ["eval_cam", "data.mask_dir"]),
                  {"cams": folder_identity(run.cams), "masks": masks_identity(cfg),
                   **auto_identity(cfg, cfg.eval_cam.split, cfg.eval_cam.bkg_score)})


def _ir_labels(cfg: Config, run: RunDir) -> Record:
    settings = flat_settings(cfg, ["ir_labels"], ["ir_labels.num_workers"])
    return Record("ir_labels", settings, {"cams": folder_identity(run.cams),
                                          **auto_identity(cfg, cfg.data.train_list,
                                                          cfg.ir_labels.fg_thres,
                                                          cfg.ir_labels.bg_thres)})


def _train_irn(cfg: Config, run: RunDir) -> Record:
    settings = flat_settings(cfg, ["seed", "data.train_list", "model.backbone", "train_irn"],
                             _training_exclude("train_irn", cfg))
    inputs = {"dataset": dataset_identity(cfg), "ir_labels": folder_identity(run.ir_labels)}
    init = resolve_generated(cfg).train_irn.backbone_init
    if init == "cam":
        inputs["backbone_init"] = file_identity(run.cam_checkpoint)
    elif init not in ("imagenet", "none"):
        inputs["backbone_init"] = file_identity(Path(init))
    return Record("train_irn", settings, inputs)


def _pseudo_labels(cfg: Config, run: RunDir) -> Record:
    per_class = cfg.pseudo_labels.class_thresholds
    settings = flat_settings(cfg, ["pseudo_labels"],
                             ["pseudo_labels.split", "pseudo_labels.checkpoint",
                              *_at_default("pseudo_labels.class_thresholds", not per_class)])
    class_rule = {"class_rule": f"class mean ratio ^ {CLASS_POWER:g}"} if per_class else {}
    return Record("pseudo_labels", settings, {"dataset": dataset_identity(cfg),
                                              "cams": folder_identity(run.cams),
                                              "checkpoint": file_identity(run.irn_checkpoint),
                                              **auto_identity(cfg, cfg.pseudo_labels.split,
                                                              cfg.pseudo_labels.bg_thres),
                                              **class_rule})


def _eval_labels(cfg: Config, run: RunDir) -> Record:
    settings = flat_settings(cfg, ["eval_labels", "data.mask_dir"], ["eval_labels.label_dir"])
    inputs = {"labels": folder_identity(run.eval_label_dir), "masks": masks_identity(cfg)}
    if cfg.eval_labels.sweep:
        inputs["walks"] = folder_identity(run.walks)
    return Record("eval_labels", settings, inputs)


def _train_seg(cfg: Config, run: RunDir) -> Record:
    settings = flat_settings(cfg, ["seed", "seg", "train_seg"],
                             [*_training_exclude("train_seg"), "seg.label_dir",
                              *_at_default("train_seg.loss_at",
                                           cfg.train_seg.loss_at == "output")])
    return Record("train_seg", settings, {"dataset": dataset_identity(cfg),
                                          "labels": folder_identity(run.seg_train_labels),
                                          **weights_identity(
                                              resolve_generated(cfg).seg.pretrained)})


def _infer_seg(cfg: Config, run: RunDir) -> Record:
    settings = flat_settings(cfg, ["infer_seg", "seg.backbone", "seg.layout", "seg.msc_scales"],
                             ["infer_seg.split", "infer_seg.checkpoint", "infer_seg.out_dir",
                              "infer_seg.crf.workers", "infer_seg.crf.enabled",
                              *_at_default("infer_seg.trained_scale",
                                           cfg.infer_seg.trained_scale)])
    return Record("infer_seg", settings, {"dataset": dataset_identity(cfg),
                                          "checkpoint": file_identity(run.seg_checkpoint)})


def _eval_seg(cfg: Config, run: RunDir) -> Record:
    settings = flat_settings(cfg, ["eval_seg", "data.mask_dir"], ["eval_seg.pred_dir"])
    return Record("eval_seg", settings,
                  {"predictions": folder_identity(run.eval_seg_predictions),
                   "masks": masks_identity(cfg)})


RECORDS: dict[str, Callable[[Config, RunDir], Record]] = {
    "train_cam": _train_cam, "make_cam": _make_cam, "eval_cam": _eval_cam,
    "ir_labels": _ir_labels, "train_irn": _train_irn, "pseudo_labels": _pseudo_labels,
    "eval_labels": _eval_labels, "train_seg": _train_seg, "infer_seg": _infer_seg,
    "eval_seg": _eval_seg,
}


def stage_record(cfg: Config, stage: str) -> Record | None:
    """The record `stage` would write under `cfg` (None for stages without one)."""
    maker = RECORDS.get(stage)
    return maker(cfg, RunDir(cfg)) if maker else None


def require_input(cfg: Config, producer: str, folder: Path) -> None:
    """Refuse an input folder that `producer` would not make under `cfg` (its keys named)."""
    command = producer.replace("_", "-")
    require_current(folder, stage_record(cfg, producer), command, f"vwe {command} --overwrite")
