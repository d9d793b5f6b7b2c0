"""`vwe demo`: the generated dataset through the pipeline on CPU, then the tables and pictures.

Runs with `configs/demo.yaml` (a small backbone, small images) unless `--config` says otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vwe.config import Config
from vwe.data.io import load_npz, read_image
from vwe.data.voc import VocLayout
from vwe.pipeline import CAM_STAGES, run_stages
from vwe.visualize import save_cam_panel

log = logging.getLogger(__name__)

NUM_PANELS = 8


def write_panels(cfg: Config, count: int = NUM_PANELS) -> list[str]:
    """Image | ground truth | CAM per labelled class, for the first images of the eval split."""
    layout = VocLayout(cfg.data.root, cfg.data.mask_dir)
    out_dir = Path(cfg.run_dir) / "cam_panels"
    written = []
    for name in layout.read_split(cfg.eval_cam.split)[:count]:
        cams = load_npz(Path(cfg.run_dir) / "cams" / f"{name}.npz")
        image = read_image(layout.image_path(name))
        mask = layout.read_mask(name, len(layout.class_names))
        path = out_dir / f"{name}.png"
        save_cam_panel(path, image, mask, cams["high_res"], np.asarray(cams["keys"]),
                       layout.class_names)
        written.append(str(path))
    return written


def run(cfg: Config) -> dict:
    summaries = run_stages(cfg, ("make_dataset", *CAM_STAGES))
    panels = write_panels(cfg)
    log.info("demo: CAM pictures in %s", Path(panels[0]).parent if panels else "-")
    table = summaries["eval_cam"].get("table", "")
    return {"table": table, "panels": panels, "run_dir": cfg.run_dir}
