"""`vwe sweep --config FILE KEY=V1,V2,… [--seeds N]`: one config key over values, as Fig. 9 of
the paper sweeps k (`model.num_words=16,32,64`) and γ (`model.hspp_gamma=0,1,2,4`)
(docs/method.md#ablations). Each (value, seed) is a run directory under
`<run_dir>/sweep-<key>/`; finished runs are skipped. Writes `sweep.json` and `sweep.png`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from vwe.config import Config
from vwe.data.io import write_json_atomic
from vwe.errors import VweError
from vwe.experiments.runs import Variant, experiment_dir, mean_sd, run_variants, seeds_text
from vwe.metrics import format_value
from vwe.plots import sweep_chart

log = logging.getLogger(__name__)

SCORE_KEYS = ("cam_at_bkg", "cam_best", "labels", "labels_best", "seg", "seg_crf")


def slug(key: str, value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{key.split('.')[-1]}={value}")


def run(cfg: Config) -> dict[str, Any]:
    settings = cfg.sweep
    if not settings.key or len(settings.values) < 2:
        raise VweError("vwe sweep needs KEY=V1,V2,… (e.g. model.num_words=16,32,64)")
    key, values = settings.key, list(settings.values)
    variants = [Variant(slug(key, value), f"{key}={value}", [f"{key}={value}"])
                for value in values]
    parent = experiment_dir(cfg, f"sweep-{key}", settings.through)
    results = run_variants(cfg, variants, settings.seeds, settings.through, parent, "sweep")
    rows = [result.to_json(SCORE_KEYS) for result in results]
    report = {"key": key, "values": values, "preset": cfg.preset, "dataset": cfg.data.root,
              "seeds": settings.seeds, "bkg_score": cfg.eval_cam.bkg_score,
              "eval_split": cfg.eval_cam.split, "rows": rows}
    write_json_atomic(parent / "sweep.json", report)
    title = f"{key} on {Path(cfg.data.root).name}: CAM mIoU, {seeds_text(settings.seeds)}"
    chart = sweep_chart(parent / "sweep.png", key, values, rows, title)
    later = [(name, column) for name, column in (("labels", "pseudo"), ("seg", "seg"),
                                                 ("seg_crf", "seg + CRF"))
             if any(result.stats(name)["n"] for result in results)]
    header = (f"{key:24s}{'at bkg ' + format_value(cfg.eval_cam.bkg_score):>14s}"
              f"{'best thr.':>14s}" + "".join(f"{column:>14s}" for _, column in later))
    lines = [f"vwe sweep: {key}, {settings.seeds} seeds, mIoU % (CAM on "
             f"{cfg.eval_cam.split})", header, "-" * len(header)]
    for value, result in zip(values, results):
        lines.append(f"{str(value):24s}{mean_sd(result.stats('cam_at_bkg')):>14s}"
                     f"{mean_sd(result.stats('cam_best')):>14s}"
                     + "".join(f"{mean_sd(result.stats(name)):>14s}" for name, _ in later))
    log.info("sweep: %s and %s", parent / "sweep.json", chart)
    return {"table": "\n".join(lines), "json": str(parent / "sweep.json"), "chart": str(chart)}
