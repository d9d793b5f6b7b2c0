"""`vwe ir-labels`: IRNet's inter-pixel relation labels from confident CAM regions
(docs/refinement.md#ir-labels).

For every image of `data.train_list`: the `high_res` CAMs with a constant fg plane (0.30) and a
bg plane (0.05), each argmax refined by a dense CRF, combined into 0 (confident background),
class + 1 (confident foreground) and 255 (uncertain). The CRFs run in `ir_labels.num_workers`
spawned processes per rank; ranks take strided shares; images already written are skipped, and
every PNG is written atomically (the per-image runner), so an interrupted run resumes where it
stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vwe.config import Config, IrLabelConfig
from vwe.data.cam_files import check_cam_files, full_size, load_cam
from vwe.data.io import read_image, save_label_png
from vwe.data.voc import open_dataset
from vwe.engine import distributed as dist_utils
from vwe.engine.distributed import DistContext
from vwe.engine.per_image import ImageOutputs, run_per_image
from vwe.engine.run_dir import RunDir
from vwe.errors import VweError
from vwe.inference.thresholds import choose_background_score, is_auto
from vwe.refine.ir_label import IGNORE, ir_label
from vwe.stage_records import require_input, stage_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IrLabelTask:
    """One image's work, picklable for the worker processes."""

    name: str
    image_path: Path
    cam_path: Path
    out_path: Path
    fg_thres: float
    bg_thres: float


def check_thresholds(ir_cfg: IrLabelConfig) -> None:
    """0 ≤ bg_thres ≤ fg_thres ≤ 1, else the ignore band is meaningless
    (docs/refinement.md#ir-labels)."""
    if not ir_cfg.bg_thres <= ir_cfg.fg_thres:  # each in [0, 1]: the config checks it
        raise VweError(f"ir_labels thresholds must satisfy 0 <= bg_thres <= fg_thres <= 1 "
                       f"(got bg_thres={ir_cfg.bg_thres}, fg_thres={ir_cfg.fg_thres}); "
                       "IRNet uses 0.05 and 0.30")


def make_one(task: IrLabelTask) -> tuple[str, np.ndarray]:
    """IR label of one image, written as a palette PNG; returns (name, [bg, fg, ignore] counts)."""
    image = read_image(task.image_path)
    keys, high_res = load_cam(task.cam_path, "high_res")
    label = ir_label(image, high_res, keys, task.fg_thres, task.bg_thres)
    save_label_png(task.out_path, label)
    counts = np.array([(label == 0).sum(), ((label > 0) & (label != IGNORE)).sum(),
                       (label == IGNORE).sum()], dtype=np.int64)
    return task.name, counts


def run_tasks(tasks: list[IrLabelTask], num_workers: int) -> Iterator[tuple[str, np.ndarray]]:
    """Results in completion order, from a spawned process pool (or in process for 0 workers)."""
    if num_workers <= 0 or len(tasks) <= 1:
        yield from map(make_one, tasks)
        return
    context = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state
    with context.Pool(min(num_workers, len(tasks))) as pool:
        yield from pool.imap_unordered(make_one, tasks, chunksize=1)


def run(cfg: Config) -> dict:
    ctx = dist_utils.setup("cpu")  # CRF work only; gloo for the barrier
    try:
        return make_ir_labels(cfg, ctx)
    finally:
        dist_utils.teardown(ctx)


def make_ir_labels(cfg: Config, ctx: DistContext) -> dict:
    """Write <run_dir>/ir_labels/<name>.png for every image of data.train_list
    (docs/refinement.md#ir-labels)."""
    ir_cfg = cfg.ir_labels
    run_dir = RunDir(cfg)
    layout = open_dataset(cfg.data)
    names, labels = layout.split_with_labels(cfg.data.train_list)
    require_input(cfg, "make_cam", run_dir.cams)
    cam_paths = check_cam_files(layout, run_dir.cams, names, labels, "high_res", full_size)
    auto = None
    if is_auto(ir_cfg.fg_thres) or is_auto(ir_cfg.bg_thres):
        auto = choose_background_score(layout, dict(zip(names, cam_paths)).__getitem__, names,
                                       layout.masked_names(names))
        ir_cfg = dataclasses.replace(
            ir_cfg, fg_thres=auto["fg_thres"] if is_auto(ir_cfg.fg_thres) else ir_cfg.fg_thres,
            bg_thres=auto["bg_thres"] if is_auto(ir_cfg.bg_thres) else ir_cfg.bg_thres)
        log.info("ir-labels: auto thresholds fg %g, bg %g (background score %g, %s; %s)",
                 ir_cfg.fg_thres, ir_cfg.bg_thres, auto["bkg_score"], auto["rule"],
                 auto["ir_rule"])
    check_thresholds(ir_cfg)
    out_dir = run_dir.ir_labels
    tasks = {name: IrLabelTask(name, layout.image_path(name), cam_path,
                               run_dir.ir_label_file(name), ir_cfg.fg_thres, ir_cfg.bg_thres)
             for name, cam_path in zip(names, cam_paths)}
    outputs = ImageOutputs((out_dir,), lambda name: [tasks[name].out_path], ("*.png",))
    result = run_per_image("ir_labels", names, outputs, stage_record(cfg, "ir_labels"),
                           cfg.overwrite, ctx,
                           lambda todo: run_tasks([tasks[n] for n in todo], ir_cfg.num_workers))
    totals = sum((counts for _, counts in result.results), np.zeros(3, dtype=np.int64))
    share = totals / max(int(totals.sum()), 1)
    log.info("ir-labels: %d label files in %s; this rank computed %d (bg %.1f%%, fg %.1f%%, "
             "ignore %.1f%% of their pixels)", len(names), out_dir, len(result.computed),
             *(100 * share))
    return {"label_dir": str(out_dir), "images": len(names), "computed": len(result.computed),
            "fg_thres": ir_cfg.fg_thres, "bg_thres": ir_cfg.bg_thres,
            "auto": None if auto is None else {k: v for k, v in auto.items() if k != "histogram"},
            "pixel_share": {"bg": float(share[0]), "fg": float(share[1]),
                            "ignore": float(share[2])}}
