"""`vwe run` / `vwe demo`: the stage order, done-markers and resume.

Each finished stage leaves `<run_dir>/done/<stage>.json` holding its summary; running again skips
finished stages and resumes an unfinished one (the stages themselves resume per image or from
their last checkpoint).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from vwe.config import Config
from vwe.data.io import write_json_atomic
from vwe.errors import VweError

log = logging.getLogger(__name__)

CAM_STAGES = ("train_cam", "make_cam", "eval_cam")
ALWAYS_RUN = frozenset({"make_dataset"})  # cheap and idempotent: checks its own output


def marker_path(cfg: Config, stage: str) -> Path:
    return Path(cfg.run_dir) / "done" / f"{stage}.json"


def with_resume(cfg: Config) -> Config:
    """Training stages continue from their last checkpoint when one is there."""
    return dataclasses.replace(cfg, train_cam=dataclasses.replace(cfg.train_cam, resume=True))


def run_stages(cfg: Config, stages: Sequence[str] = CAM_STAGES,
               from_stage: str | None = None) -> dict[str, dict]:
    """Run `stages` in order, skipping those with a done-marker (all from `from_stage` rerun)."""
    if from_stage is not None and from_stage not in stages:
        raise VweError(f"--from {from_stage}: not a stage; choose one of {', '.join(stages)}")
    rerun = set(stages[stages.index(from_stage):]) if from_stage else set()
    summaries: dict[str, dict] = {}
    for stage in stages:
        marker = marker_path(cfg, stage)
        if stage in rerun and marker.exists():
            marker.unlink()
        if marker.exists() and stage not in ALWAYS_RUN:
            summaries[stage] = json.loads(marker.read_text())
            log.info("%s: done earlier (%s), skipped", stage, marker)
            continue
        log.info("── %s", stage)
        module = importlib.import_module(f"vwe.stages.{stage}")
        summary = module.run(with_resume(cfg))
        if summary.get("finished", True):
            write_json_atomic(marker, _jsonable(summary))
        summaries[stage] = summary
    return summaries


def _jsonable(summary: dict) -> dict:
    return json.loads(json.dumps(summary, default=str))
