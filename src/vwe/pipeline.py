"""`vwe run` / `vwe demo`: the stage order, the records that make it a dependency graph, resume.

Each finished stage leaves `<run_dir>/done/<stage>.json` holding the record it was made with and
its summary. Running again skips a stage only when its marker's record equals the record the
stage would make now (docs/pipeline.md#records); a changed key therefore reruns its stage, and
since every record holds its inputs' identities, every stage after it. Stages rerun with
`overwrite=changed` (their folders are recomputed, not refused) and resume where they can;
`--from STAGE` reruns that stage and every later one with `overwrite=always`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from vwe.config import Config
from vwe.data.io import read_json, write_json_atomic
from vwe.engine.records import Record
from vwe.engine.run_dir import RunDir
from vwe.engine.weights import wants_generated
from vwe.errors import VweError
from vwe.metrics import percent
from vwe.stage_records import stage_record

log = logging.getLogger(__name__)

CAM_STAGES = ("train_cam", "make_cam", "eval_cam")
REFINE_STAGES = ("ir_labels", "train_irn", "pseudo_labels", "eval_labels")
SEG_STAGES = ("train_seg", "infer_seg", "eval_seg")
PIPELINE = ("pretrain", *CAM_STAGES, *REFINE_STAGES, *SEG_STAGES)
# cheap and idempotent (they check their own output): run every time
ALWAYS_RUN = frozenset({"make_dataset", "pretrain"})
# stages that run only when the config asks for their output (docs/synthetic.md#pretraining)
WANTED_WHEN: dict[str, Callable[[Config], Any]] = {"pretrain": wants_generated}
# stages whose record leaves the split out (one folder holds any split's images, each computed
# once), so their marker's summary says which split it covers: another split runs the stage
SPLIT_OF: dict[str, Callable[[Config], str]] = {
    "make_cam": lambda cfg: cfg.cam.split,
    "pseudo_labels": lambda cfg: cfg.pseudo_labels.split,
    "infer_seg": lambda cfg: cfg.infer_seg.split,
}

# The papers' VOC 2012 numbers (mIoU %), next to which `vwe run` prints ours (docs/method.md).
PAPER_NUMBERS: dict[str, dict[str, float]] = {
    "paper": {"cam": 52.9, "pseudo": 67.7, "seg": 66.3, "seg_crf": 67.2},
    "ijcai-code": {"cam": 52.9, "pseudo": 67.7, "seg": 66.3, "seg_crf": 67.2},
    "vwl-l": {"cam": 57.3, "seg_crf": 69.2},
    "vwl-m": {"cam": 56.9, "seg_crf": 68.7},
}


def with_resume(cfg: Config, overwrite: str = "changed") -> Config:
    """Training stages continue from their last checkpoint when one is there; folders made with
    other settings are recomputed (`overwrite`)."""
    changes = {f.name: dataclasses.replace(getattr(cfg, f.name), resume=True)
               for f in dataclasses.fields(cfg)
               if dataclasses.is_dataclass(getattr(cfg, f.name))
               and hasattr(getattr(cfg, f.name), "resume")}
    return dataclasses.replace(cfg, overwrite=overwrite, **changes)


def marker_summary(path: Any, record: Record | None) -> dict | None:
    """The summary in a done-marker when it was made with `record`, else None."""
    if not path.is_file():
        return None
    try:
        marker = read_json(path)
    except VweError:
        return None
    wanted = record.to_json() if record is not None else None
    if not isinstance(marker, dict) or "summary" not in marker or marker.get("record") != wanted:
        return None
    return marker["summary"]


def run_stages(cfg: Config, stages: Sequence[str] = PIPELINE,
               from_stage: str | None = None) -> dict[str, dict]:
    """Run `stages` in order, skipping those whose marker holds today's record (all from
    `from_stage` rerun)."""
    if from_stage and from_stage.replace("-", "_") not in stages:
        raise VweError(f"--from {from_stage}: not a stage; choose one of "
                       f"{', '.join(s.replace('_', '-') for s in stages)}")
    first = stages.index(from_stage.replace("-", "_")) if from_stage else len(stages)
    run_dir = RunDir(cfg)
    summaries: dict[str, dict] = {}
    for index, stage in enumerate(stages):
        if stage in WANTED_WHEN and not WANTED_WHEN[stage](cfg):
            continue
        stage_cfg = with_resume(cfg, "always" if index >= first else "changed")
        record = stage_record(stage_cfg, stage)
        marker = run_dir.done_marker(stage)
        done = marker_summary(marker, record) if index < first else None
        if done is not None and stage in SPLIT_OF and done.get("split") != SPLIT_OF[stage](cfg):
            done = None
        if done is not None and stage not in ALWAYS_RUN:
            summaries[stage] = done
            log.info("%s: done earlier with these settings (%s), skipped", stage, marker)
            continue
        if marker.exists():
            marker.unlink()
        log.info("── %s", stage.replace("_", "-"))
        module = importlib.import_module(f"vwe.stages.{stage}")
        summary = module.run(stage_cfg)
        summaries[stage] = summary
        if not summary.get("finished", True):  # stopped early (stop_at_step): resume later
            log.info("%s stopped before the end; run again to resume it", stage)
            break
        write_json_atomic(marker, {"record": record.to_json() if record else None,
                                   "summary": _jsonable(summary)})
    return summaries


def _jsonable(summary: dict) -> dict:
    return json.loads(json.dumps(summary, default=str))


def stage_table(summaries: dict[str, dict], preset: str, title: str = "") -> str:
    """One table: CAM, pseudo-label and segmentation mIoU, next to the paper's VOC numbers."""
    paper = PAPER_NUMBERS.get(preset, {})
    seg = summaries.get("eval_seg", {}).get("variants", {})  # {"raw": mIoU, "crf": mIoU}
    rows = [
        ("CAM (train)", "cam", summaries.get("eval_cam", {}).get("miou")),
        ("pseudo labels (train)", "pseudo", summaries.get("eval_labels", {}).get("miou")),
        ("segmentation (val)", "seg", seg.get("raw")),
        ("segmentation + CRF (val)", "seg_crf", seg.get("crf")),
    ]
    lines = [title] if title else []
    lines += pretrain_lines(summaries.get("pretrain", {}))
    lines += [f"{'stage':28s}{'ours':>8s}{'paper':>8s}", "-" * 44]
    for label, key, value in rows:
        paper_value = paper.get(key)
        lines.append(f"{label:28s}{percent(value):>8s}"
                     f"{percent(None if paper_value is None else paper_value / 100):>8s}")
    full = summaries.get("supervised", {}).get("variants", {})
    if full:
        lines.append(f"{'fully supervised (val)':28s}{percent(full.get('raw')):>8s}{'-':>8s}")
        lines.append(f"{'fully supervised + CRF':28s}{percent(full.get('crf')):>8s}{'-':>8s}")
        lines.append(f"{'weak / full (with CRF)':28s}{ratio(seg.get('crf'), full.get('crf')):>8s}"
                     f"{'~86%':>8s}")
    lines.append(f"(mIoU %; paper column: the {preset} preset's VOC 2012 numbers)")
    return "\n".join(lines)


def ratio(weak: float | None, full: float | None) -> str:
    """weak ÷ full in % (how WSSS papers compare with the fully supervised DeepLab)."""
    if weak is None or not full:
        return "-"
    return f"{100 * weak / full:.1f}%"


def pretrain_lines(summary: dict) -> list[str]:
    """One line per backbone `vwe pretrain` made or found (docs/synthetic.md#pretraining)."""
    return [f"backbone {name}: pretrained on the generated task, held-out accuracy "
            f"{percent(result.get('val_accuracy'))} % (chance {percent(result.get('chance'))} %)"
            for name, result in summary.get("backbones", {}).items()]


def supervised_config(cfg: Config) -> Config | None:
    """The same DeepLab recipe on the true masks of its training list, in
    `<run_dir>/supervised` (docs/pipeline.md#fully-supervised-bound); None without masks for
    every training image."""
    from vwe.data.voc import open_dataset

    layout = open_dataset(cfg.data)
    names = layout.read_split(cfg.train_seg.train_list)
    try:
        paths = [layout.mask_path(name) for name in names]
    except VweError:
        paths = []
    folders = {path.parent for path in paths}
    if not paths or len(folders) != 1 or not all(path.is_file() for path in paths):
        log.info("fully supervised bound: skipped, '%s' has no mask for every image",
                 cfg.train_seg.train_list)
        return None
    return dataclasses.replace(
        cfg, run_dir=str(RunDir(cfg).root / "supervised"),
        seg=dataclasses.replace(cfg.seg, label_dir=str(folders.pop())),
        infer_seg=dataclasses.replace(cfg.infer_seg, out_dir=""),
        pipeline=dataclasses.replace(cfg.pipeline, from_stage=""))


def run_supervised(cfg: Config, summaries: dict[str, dict]) -> None:
    """Train, infer and score the fully supervised DeepLab when asked and masks exist; its
    eval-seg summary goes into `summaries["supervised"]`."""
    if not cfg.pipeline.supervised or "eval_seg" not in summaries:
        return
    supervised = supervised_config(cfg)
    if supervised is None:
        return
    log.info("── fully supervised DeepLab (true masks) in %s", supervised.run_dir)
    from_stage = "train_seg" if cfg.pipeline.from_stage in SEG_STAGES else None
    done = run_stages(supervised, SEG_STAGES, from_stage)
    if "eval_seg" in done:
        summaries["supervised"] = done["eval_seg"]


def check_dataset(cfg: Config) -> None:
    """Every split the pipeline reads, and every image they list, checked before the first
    stage: a broken tags file or a missing photo stops the run in one line before minutes of
    pretraining or training, not after them (headers are not read: a stat per image)."""
    from vwe.data.voc import open_dataset

    layout = open_dataset(cfg.data)
    splits = {cfg.data.train_list, cfg.cam.split, cfg.eval_cam.split, cfg.pseudo_labels.split,
              cfg.train_seg.train_list, cfg.infer_seg.split, cfg.eval_seg.split} - {""}
    for split in sorted(splits):
        for name in layout.read_split(split):
            if not layout.image_path(name).is_file():
                raise VweError(f"split '{split}' lists '{name}' but {layout.image_path(name)} "
                               "does not exist; restore the image or remove its line")
    log.info("dataset %s: %s checked before the first stage", cfg.data.root,
             ", ".join(sorted(splits)))


def run(cfg: Config) -> dict:
    """`vwe run`: the whole pipeline from one config and one run directory."""
    check_dataset(cfg)
    summaries = run_stages(cfg, PIPELINE, cfg.pipeline.from_stage or None)
    run_supervised(cfg, summaries)
    table = stage_table(summaries, cfg.preset, f"vwe run: {cfg.run_dir}")
    write_json_atomic(RunDir(cfg).summary, _jsonable(summaries))
    return {"table": table, "stages": list(summaries)}
