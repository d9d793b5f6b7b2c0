"""Progress bars and logging: on rank 0 only, quiet in tests and logs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool = True,
             initial: int = 0) -> tqdm:
    """A tqdm bar (ETA included) that writes to stderr and disappears on other ranks."""
    return tqdm(items, total=total, desc=desc, disable=not enabled, initial=initial,
                dynamic_ncols=True, leave=True, file=sys.stderr, mininterval=1.0)



def setup_logging(run_dir: str | Path | None = None, rank: int = 0, verbose: bool = False) -> None:
    """INFO to the terminal on rank 0; every rank also appends to <run_dir>/log.txt."""
    root = logging.getLogger("vwe")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    if rank == 0:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(console)
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(Path(run_dir) / "log.txt")
        handler.setFormatter(logging.Formatter(f"%(asctime)s [rank {rank}] %(name)s: %(message)s"))
        root.addHandler(handler)
