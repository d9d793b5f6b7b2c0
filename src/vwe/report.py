"""One self-contained HTML page of a run, for `vwe report RUN_DIR` and the end of `vwe demo`
(docs/pipeline.md#report).

The page (`<run_dir>/report/index.html`, its pictures beside it in `report/`) holds the stage
table, the per-class tables of every evaluation the run has, the training curves read from the
TensorBoard scalars, panels of image / ground truth / CAM / pseudo label (training photos) and
image / ground truth / prediction (predicted photos), a spread of classes, with a colour
legend, and the ablation, sweep and codebook
results when the run has them. No server and no network: plain HTML, PNGs by relative path.
"""

from __future__ import annotations

import html
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from vwe.config import Config, load_config
from vwe.data.io import load_npz, read_image, read_json, read_label_png, write_text_atomic
from vwe.data.voc import open_dataset
from vwe.engine.run_dir import RunDir
from vwe.errors import VweError
from vwe.pipeline import stage_table
from vwe.plots import training_curves
from vwe.visualize import cam_overlay, label_to_color, legend_strip, save_image

log = logging.getLogger(__name__)

NUM_PANELS = 6
TRAINING = ("train_cam", "train_irn", "train_seg")
EXPERIMENTS = (("ablation", "ablation.png"), ("sweep-*", "sweep.png"), ("codebook", "gallery.png"))
STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
         "padding:2px 8px;text-align:right}th{background:#f3f3f3}img{max-width:100%}"
         "pre{background:#f7f7f7;padding:.5em}")


def build_report(cfg: Config) -> dict[str, Any]:
    """Write <run_dir>/report/index.html and its pictures; the summary names the page."""
    if not Path(cfg.run_dir).is_dir():
        raise VweError(f"run directory {cfg.run_dir} not found; pass the run_dir of a run")
    cfg = run_config(cfg)
    run_dir = RunDir(cfg)
    out = run_dir.root / "report"
    out.mkdir(parents=True, exist_ok=True)
    sections = [_stage_section(cfg, run_dir), _warnings_section(run_dir), _eval_sections(run_dir),
                _curves_section(run_dir, out), _panels_section(cfg, run_dir, out),
                _experiment_sections(run_dir, out)]
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>vwe report: {html.escape(str(run_dir.root))}</title>"
            f"<style>{STYLE}</style></head><body>"
            f"<h1>vwe report: {html.escape(str(run_dir.root))}</h1>"
            + "".join(s for s in sections if s) + "</body></html>")
    index = out / "index.html"
    write_text_atomic(index, page)
    log.info("report: %s", index)
    return {"report": str(index), "table": f"report: {index}"}


def run_config(cfg: Config) -> Config:
    """The config the run itself saved (its data, splits and preset), else the one given."""
    saved = Path(cfg.run_dir) / "configs"
    for command in ("demo", "run", "train-cam", "make-cam", "eval-cam"):
        path = saved / f"{command}.yaml"
        if path.is_file():
            return load_config(path, [f"run_dir={cfg.run_dir}"])
    return cfg


def _stage_section(cfg: Config, run_dir: RunDir) -> str:
    if not run_dir.summary.is_file():
        return ""
    table = stage_table(read_json(run_dir.summary), cfg.preset)
    return f"<h2>Stages</h2><pre>{html.escape(table)}</pre>"


def _warnings_section(run_dir: RunDir) -> str:
    """The degenerate results the evaluations found (docs/pipeline.md#degenerate-results)."""
    found = []
    for stage in ("eval_cam", "eval_labels", "eval_seg"):
        path = run_dir.eval_json(stage)
        if path.is_file():
            found += read_json(path).get("warnings", [])
    if not found:
        return ""
    items = "".join(f"<li>{html.escape(text)}</li>" for text in found)
    return f"<h2>Warnings</h2><ul style='color:#a40000'>{items}</ul>"


def _eval_sections(run_dir: RunDir) -> str:
    """Per-class IoU of every evaluation present (eval_cam, eval_labels, eval_seg)."""
    parts = []
    for stage, title in (("eval_cam", "CAMs"), ("eval_labels", "Pseudo labels"),
                         ("eval_seg", "Segmentation")):
        path = run_dir.eval_json(stage)
        if not path.is_file():
            continue
        report = read_json(path)
        columns = _score_columns(stage, report)
        if columns:
            parts.append(f"<h3>{title} ({html.escape(str(report.get('split', '')))})</h3>"
                         + _class_table(report["class_names"], columns))
    return "<h2>Per-class IoU (%)</h2>" + "".join(parts) if parts else ""


def _score_columns(stage: str, report: dict[str, Any]) -> dict[str, list[Any]]:
    if stage == "eval_cam":
        return {f"{name} at bkg {report['bkg_score']:g}": v["at_bkg_score"]["iou"]
                for name, v in report["variants"].items()}
    if stage == "eval_labels":
        return {"labels": report["scores"]["iou"]}
    return {name: v["iou"] for name, v in report.get("variants", {}).items() if "iou" in v}


def _class_table(class_names: list[str], columns: dict[str, list[Any]]) -> str:
    head = "<tr><th>class</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + \
        "</tr>"
    rows = []
    for index, name in enumerate(class_names):
        cells = "".join(f"<td>{_pct(values[index])}</td>" for values in columns.values())
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    means = "".join(f"<td><b>{_pct(_mean(values))}</b></td>" for values in columns.values())
    return f"<table>{head}{''.join(rows)}<tr><th>mean</th>{means}</tr></table>"


def _mean(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}"


def _curves_section(run_dir: RunDir, out: Path) -> str:
    images = []
    for stage in TRAINING:
        folder = run_dir.training(stage).tensorboard
        if folder.is_dir():
            path = training_curves(out / f"curves_{stage}.png", folder, stage)
            if path is not None:
                images.append(f"<img src='{path.name}' alt='{stage} curves'>")
    return "<h2>Training curves</h2>" + "".join(images) if images else ""


def _panels_section(cfg: Config, run_dir: RunDir, out: Path) -> str:
    """Training photos (image | ground truth | CAM | pseudo label) and val photos (image |
    ground truth | prediction), each a spread of classes, with the colour legend."""
    layout = open_dataset(cfg.data)
    class_names = ["background", *layout.class_names]
    groups = [(cfg.eval_cam.split, "training photos", "CAM | pseudo label",
               lambda name: run_dir.cam_file(name).is_file()),
              (cfg.infer_seg.split, "photos the segmentation model predicted", "prediction",
               lambda name: run_dir.prediction_file(run_dir.infer_seg_out, "crf", name)
               .is_file() or run_dir.prediction_file(run_dir.infer_seg_out, "raw", name)
               .is_file())]
    parts = []
    for split, title, columns, available in groups:
        names = [name for name in _split_or_none(layout, split) if available(name)]
        strips = []
        for name in spread_of_classes(layout, names, NUM_PANELS):
            path = save_image(out / f"panel_{name}.png", _panel(run_dir, layout, name))
            strips.append(f"<p>{html.escape(name)}<br><img src='{path.name}' alt='{name}'></p>")
        if strips:
            truth = "ground truth | " if layout.has_masks(names) else ""
            parts.append(f"<h3>{title} ({html.escape(split)})</h3><p>image | {truth}"
                         f"{columns}</p>" + "".join(strips))
    if not parts:
        return ""
    legend = save_image(out / "legend.png",
                        legend_strip(list(range(len(class_names))), class_names, 1))
    return ("<h2>Pictures</h2>" + "".join(parts)
            + f"<p>classes<br><img src='{legend.name}' alt='legend'></p>")


def _split_or_none(layout: Any, split: str) -> list[str]:
    try:
        return layout.read_split(split)
    except VweError:
        return []


def spread_of_classes(layout: Any, names: list[str], count: int) -> list[str]:
    """Up to `count` names that show as many classes as possible: each class's first image in
    turn (the rarest classes are not crowded out by the split's first names)."""
    labels = layout.labels_for(names)
    chosen: list[str] = []
    for class_index in range(layout.num_classes):
        if len(chosen) == count:
            break
        first = next((n for n in names if labels[n][class_index] > 0 and n not in chosen), None)
        if first is not None:
            chosen.append(first)
    chosen += [n for n in names if n not in chosen][:count - len(chosen)]
    return chosen


def _panel(run_dir: RunDir, layout: Any, name: str) -> np.ndarray:
    image = read_image(layout.image_path(name))
    tiles = [image]
    if layout.has_masks([name]):
        tiles.append(label_to_color(layout.read_mask(name)))
    if run_dir.cam_file(name).is_file():
        cams = load_npz(run_dir.cam_file(name))
        if len(cams["keys"]):
            tiles.append(cam_overlay(image, cams["high_res"][0].astype(np.float32)))
    predictions = [run_dir.prediction_file(run_dir.infer_seg_out, v, name) for v in ("crf", "raw")]
    for path in (run_dir.label_file(run_dir.pseudo_labels, name),
                 next((p for p in predictions if p.is_file()), predictions[0])):
        if path.is_file():
            tiles.append(label_to_color(read_label_png(path)))
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1)


def _experiment_sections(run_dir: RunDir, out: Path) -> str:
    parts = []
    for pattern, picture in EXPERIMENTS:
        for folder in sorted(run_dir.root.glob(pattern)):
            source = folder / picture
            if source.is_file():
                target = out / f"{folder.name}_{picture}"
                shutil.copyfile(source, target)
                parts.append(f"<h3>{html.escape(folder.name)}</h3>"
                             f"<img src='{target.name}' alt='{folder.name}'>")
    return "<h2>Experiments</h2>" + "".join(parts) if parts else ""
