"""Progress bars and logging: on rank 0 only, quiet in tests and logs."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger(__name__)


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool = True,
             initial: int = 0) -> tqdm | PlainProgress | NoProgress:
    """A tqdm bar (ETA included) on a terminal; in a log file (stderr redirected) a plain line
    every 10 % or minute instead of `\r` refreshes. Nothing on other ranks: not even a disabled
    tqdm, which still starts tqdm's monitor thread."""
    if not enabled:
        return NoProgress(items)
    if not _is_terminal(sys.stderr):
        return PlainProgress(items, total=total, desc=desc, initial=initial)
    return tqdm(items, total=total, desc=desc, initial=initial,
                dynamic_ncols=True, leave=True, file=sys.stderr, mininterval=1.0)


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class PlainProgress:
    """The tqdm calls the stages use (iterate, update, set_postfix, close), as log lines."""

    def __init__(self, items: Iterable[T], total: int | None, desc: str, initial: int = 0,
                 every_fraction: float = 0.1, every_seconds: float = 60.0) -> None:
        self.items, self.desc, self.n = items, desc, initial
        self.total = total if total is not None else _length(items)
        self.every_fraction, self.every_seconds = every_fraction, every_seconds
        self.start = self.last_time = time.monotonic()
        self.last_n, self.postfix, self.closed = initial, "", False

    def __iter__(self) -> Iterator[T]:
        for item in self.items:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        step = max(1, int(self.total * self.every_fraction)) if self.total else 0
        if (step and self.n - self.last_n >= step) or now - self.last_time >= self.every_seconds:
            self._line(now)

    def set_postfix(self, **values: object) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed and self.n != self.last_n:
            self._line(time.monotonic())
        self.closed = True

    def _line(self, now: float) -> None:
        elapsed = now - self.start
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        rate = (self.n - self.last_n) / max(now - self.last_time, 1e-9)
        eta = f", eta {(self.total - self.n) / rate:.0f}s" if self.total and rate > 0 else ""
        extra = f", {self.postfix}" if self.postfix else ""
        log.info("%s: %s (%.0fs%s%s)", self.desc, done, elapsed, eta, extra)
        self.last_n, self.last_time = self.n, now


class NoProgress:
    """The same calls as PlainProgress, silent: the progress of a rank other than 0."""

    def __init__(self, items: Iterable[T]) -> None:
        self.items = items

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values: object) -> None:
        pass

    def close(self) -> None:
        pass


def _length(items: Iterable[object]) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None


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
