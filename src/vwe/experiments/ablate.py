"""`vwe ablate --config FILE [--seeds N] [--through eval-labels]`: Table 1 of the paper on any
preset and dataset (docs/method.md#ablations).

Rows: the baseline (global average pooling, no word losses), + VWE (the word losses), + HSPP
(hybrid pooling, no word losses), both (the configured method), both with the word-CAM fusion
switched (sharing both's trained network), and both with a softmax temperature (the word CAM's
fix, docs/method.md#why-the-word-cam-is-zero). Each (row, seed) is a run directory under
`<run_dir>/ablation/`; run again, finished runs are skipped. Writes `ablation.json` and
`ablation.png` beside them and prints mean ± sd over seeds next to the paper's VOC numbers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vwe.config import Config
from vwe.data.io import write_json_atomic
from vwe.errors import VweError
from vwe.experiments.runs import (
    Variant,
    VariantResult,
    experiment_dir,
    mean_sd,
    run_variants,
    seeds_text,
)
from vwe.metrics import format_value
from vwe.plots import ablation_chart

log = logging.getLogger(__name__)

# Table 1 of the paper: CAM mIoU (%) on VOC 2012 train, ResNet-50.
PAPER_TABLE1 = {"baseline": 48.3, "vwe": 51.1, "hspp": 50.6, "both": 52.9}
SCORE_KEYS = ("cam_at_bkg", "cam_best", "cam_mark", "cam_body", "labels", "labels_best",
              "labels_mark", "labels_body", "seg", "seg_crf")
NO_WORDS = ["train_cam.losses.word=0", "train_cam.losses.w2i=0", "train_cam.losses.decov=0",
            "cam.fuse_word_cam=false"]


def ablation_rows(cfg: Config) -> list[Variant]:
    """The rows for this config's method (its preset's word settings, its own HSPP settings)."""
    fused = cfg.cam.fuse_word_cam
    switched = "off" if fused else "on"
    return [
        Variant("baseline", "baseline (GAP)", ["model.pooling=gap", *NO_WORDS],
                paper=PAPER_TABLE1["baseline"]),
        Variant("vwe", "+ VWE", ["model.pooling=gap"], paper=PAPER_TABLE1["vwe"]),
        Variant("hspp", "+ HSPP", ["model.pooling=hspp", *NO_WORDS], paper=PAPER_TABLE1["hspp"]),
        Variant("both", "VWE + HSPP", ["model.pooling=hspp"], paper=PAPER_TABLE1["both"]),
        Variant(f"both-fusion-{switched}", f"VWE + HSPP, fusion {switched}",
                ["model.pooling=hspp", f"cam.fuse_word_cam={str(not fused).lower()}"],
                shares_training_of="both"),
        Variant("both-temperature", f"VWE + HSPP, τ={cfg.ablate.temperature:g}",
                ["model.pooling=hspp", f"model.temperature={cfg.ablate.temperature}",
                 "cam.fuse_word_cam=true"]),
    ]


def chosen_rows(cfg: Config) -> list[Variant]:
    rows = ablation_rows(cfg)
    if not cfg.ablate.rows:
        return rows
    known = {row.slug: row for row in rows}
    unknown = [slug for slug in cfg.ablate.rows if slug not in known]
    if unknown:
        raise VweError(f"ablate.rows: '{unknown[0]}' is not a row; choose from "
                       f"{', '.join(known)}")
    wanted = set(cfg.ablate.rows)
    missing = {row.shares_training_of for row in rows
               if row.slug in wanted and row.shares_training_of} - wanted
    return [row for row in rows if row.slug in wanted | missing]


def run(cfg: Config) -> dict[str, Any]:
    settings = cfg.ablate
    parent = experiment_dir(cfg, "ablation", settings.through)
    results = run_variants(cfg, chosen_rows(cfg), settings.seeds, settings.through, parent,
                           "ablate")
    rows = [result.to_json(SCORE_KEYS) for result in results]
    report = {"preset": cfg.preset, "dataset": cfg.data.root, "seeds": settings.seeds,
              "through": settings.through, "bkg_score": cfg.eval_cam.bkg_score,
              "eval_split": cfg.eval_cam.split, "rows": rows}
    write_json_atomic(parent / "ablation.json", report)
    title = f"{cfg.preset} on {Path(cfg.data.root).name}: CAM mIoU, {seeds_text(settings.seeds)}"
    chart = ablation_chart(parent / "ablation.png", rows, title)
    table = ablation_table(results, report)
    log.info("ablate: %s and %s", parent / "ablation.json", chart)
    return {"table": table, "json": str(parent / "ablation.json"), "chart": str(chart)}


def ablation_table(results: list[VariantResult], report: dict[str, Any]) -> str:
    """Mean ± sd over seeds at the configured background score and the best threshold."""
    with_labels = any(result.stats("labels")["n"] for result in results)
    with_seg = any(result.stats("seg")["n"] for result in results)
    with_parts = any(result.stats("cam_mark")["n"] for result in results)
    header = (f"{'row':30s}{'at bkg ' + format_value(report['bkg_score']):>14s}"
              f"{'best thr.':>14s}" + (f"{'pseudo':>14s}" if with_labels else "")
              + (f"{'seg':>14s}{'seg + CRF':>14s}" if with_seg else "")
              + (f"{'mark rec.':>14s}{'body rec.':>14s}" if with_parts else "")
              + f"{'paper':>8s}")
    lines = [f"vwe ablate: {report['preset']} preset, {report['seeds']} seeds, CAM mIoU % on "
             f"{report['eval_split']}", header, "-" * len(header)]
    for result in results:
        paper = result.variant.paper
        line = (f"{result.variant.label:30s}{mean_sd(result.stats('cam_at_bkg')):>14s}"
                f"{mean_sd(result.stats('cam_best')):>14s}")
        if with_labels:
            line += f"{mean_sd(result.stats('labels')):>14s}"
        if with_seg:
            line += f"{mean_sd(result.stats('seg')):>14s}{mean_sd(result.stats('seg_crf')):>14s}"
        if with_parts:
            line += (f"{mean_sd(result.stats('cam_mark')):>14s}"
                     f"{mean_sd(result.stats('cam_body')):>14s}")
        lines.append(line + f"{'-' if paper is None else format(paper, '.1f'):>8s}")
    lines.append("(paper: Table 1, VOC 2012 train, ResNet-50 from ImageNet"
                 + ("; mark / body rec.: the CAM's recall on the objects' distinguishing marks "
                    "and on the rest of their bodies" if with_parts else "") + ")")
    return "\n".join(lines)
