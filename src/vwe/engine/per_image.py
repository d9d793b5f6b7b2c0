"""The per-image stage runner: make-cam, ir-labels, pseudo-labels and infer-seg all run on it.

One place for what every such stage needs: the output folders' record (recompute or refuse a
folder made with other settings, docs/pipeline.md#records), this rank's strided share of the
images, skipping images already done (each writes its files atomically, the last one marking it
done), a progress bar on rank 0 and the closing barrier. The stage supplies only `process`,
which turns a list of image names into one result per image (in any order, so it may use a
worker pool).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vwe.engine import distributed as dist_utils
from vwe.engine.distributed import DistContext
from vwe.engine.progress import progress
from vwe.engine.records import (
    Record,
    clear_outputs,
    needs_clearing,
    read_record,
    write_record,
)
from vwe.errors import VweError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageOutputs:
    """Where a per-image stage writes: its folders, the files that mark an image done, and
    the glob patterns (relative to each folder) of the files it owns."""

    folders: tuple[Path, ...]
    done_files: Callable[[str], Sequence[Path]]
    patterns: tuple[str, ...]

    def has_outputs(self) -> bool:
        return any(next(Path(f).glob(p), None) is not None
                   for f in self.folders for p in self.patterns)

    def is_done(self, name: str) -> bool:
        return all(path.exists() for path in self.done_files(name))


@dataclass(frozen=True)
class PerImageResult:
    """What a run did on this rank: the images computed and their results."""

    computed: list[str]
    results: list[Any]


def prepare_folders(stage: str, outputs: ImageOutputs, record: Record, overwrite: str,
                    ctx: DistContext) -> None:
    """Rank 0 checks the record, clears the folders if they must be remade, writes the record;
    every rank then starts from the same folder state."""
    error: Exception | None = None
    if ctx.is_main:
        try:
            if needs_clearing(outputs.folders[0], record, overwrite, dashed(stage),
                              outputs.has_outputs()):
                removed = clear_outputs(outputs.folders, outputs.patterns)
                log.info("%s: removed %d earlier files", dashed(stage), removed)
            for folder in outputs.folders:
                Path(folder).mkdir(parents=True, exist_ok=True)
            write_record(outputs.folders, record)
        except Exception as err:  # re-raised after the barrier, so other ranks do not hang
            error = err
    dist_utils.barrier(ctx)
    if error is not None:
        raise error
    if not ctx.is_main and read_record(outputs.folders[0]) != record.to_json():
        raise VweError(f"{dashed(stage)}: rank 0 refused {outputs.folders[0]}; see its message")


def run_per_image(stage: str, names: Sequence[str], outputs: ImageOutputs, record: Record,
                  overwrite: str, ctx: DistContext,
                  process: Callable[[list[str]], Iterable[Any]]) -> PerImageResult:
    """Run `process` on this rank's images that are not done yet; see the module docstring."""
    prepare_folders(stage, outputs, record, overwrite, ctx)
    mine = dist_utils.shard(list(names), ctx)
    todo = [name for name in mine if not outputs.is_done(name)]
    if len(todo) < len(mine):
        log.info("%s: %d of %d images already done with these settings, resuming", dashed(stage),
                 len(mine) - len(todo), len(mine))
    results = list(progress(process(todo), total=len(todo), desc=dashed(stage),
                            enabled=ctx.is_main))
    dist_utils.barrier(ctx)
    return PerImageResult(todo, results)


def dashed(stage: str) -> str:
    """A stage's command name (make_cam → make-cam), as users type it."""
    return stage.replace("_", "-")
