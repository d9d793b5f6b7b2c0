"""`vwe demo`: the generated dataset through the pipeline on CPU, then the tables and pictures.

Runs with `configs/demo.yaml` (a small backbone, small images) unless `--config` says otherwise.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from vwe.config import Config
from vwe.data.io import load_npz, read_image, write_json_atomic
from vwe.data.voc import open_dataset
from vwe.engine.run_dir import RunDir
from vwe.pipeline import PIPELINE, run_stages, run_supervised, stage_table
from vwe.report import build_report
from vwe.visualize import save_cam_panel

log = logging.getLogger(__name__)

NUM_PANELS = 8


def write_panels(cfg: Config, count: int = NUM_PANELS) -> list[str]:
    """Image | ground truth | CAM per labelled class, for the first images of the eval split."""
    layout = open_dataset(cfg.data)
    run_dir = RunDir(cfg)
    written = []
    for name in layout.read_split(cfg.eval_cam.split)[:count]:
        cams = load_npz(run_dir.cam_file(name))
        image = read_image(layout.image_path(name))
        mask = layout.read_mask(name, len(layout.class_names))
        path = run_dir.cam_panel_file(name)
        save_cam_panel(path, image, mask, cams["high_res"], np.asarray(cams["keys"]),
                       layout.class_names)
        written.append(str(path))
    return written


def fusion_line(eval_cam: dict) -> str:
    """CAM mIoU with the word-CAM fusion on and off (docs/method.md asks for both)."""
    variants = eval_cam.get("variants", {})
    parts = [f"{name} {100 * v['miou']:.1f}" for name, v in variants.items() if "miou" in v]
    return "CAM mIoU by variant (fused = max(M_img, M_word)): " + ", ".join(parts)


def run(cfg: Config) -> dict:
    summaries = run_stages(cfg, ("make_dataset", *PIPELINE), cfg.pipeline.from_stage or None)
    run_supervised(cfg, summaries)
    panels = write_panels(cfg)
    log.info("demo: CAM pictures in %s", Path(panels[0]).parent if panels else "-")
    write_json_atomic(RunDir(cfg).summary, json.loads(json.dumps(summaries, default=str)))
    report = build_report(cfg)["report"]
    tables = [summaries["eval_cam"].get("table", ""), fusion_line(summaries["eval_cam"]),
              summaries["eval_labels"].get("table", ""), summaries["eval_seg"].get("table", ""),
              stage_table(summaries, cfg.preset, f"vwe demo: {cfg.run_dir} (generated data)"),
              f"report: {report}"]
    return {"table": "\n\n".join(t for t in tables if t), "panels": panels,
            "run_dir": cfg.run_dir, "report": report}
