"""One writer per run directory: `<run_dir>/.lock` names the process that holds it.

Two commands writing one run_dir would mix their files, so the second is refused with a line
naming the holder. A lock left by a process that died (kill -9, a crash, a lost node) is detected
(its pid no longer runs on this host) and taken over. Under torchrun the job holds one lock,
taken by rank 0.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vwe.errors import VweError

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def read_holder(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return holder if isinstance(holder, dict) else None


def is_stale(holder: dict[str, Any] | None) -> bool:
    """A lock whose process is gone (same host), or an unreadable lock file."""
    if holder is None:
        return True
    if holder.get("host") != socket.gethostname():
        return False  # cannot check another host's processes
    pid = int(holder.get("pid", 0))
    return pid == os.getpid() or not pid_alive(pid)


def acquire(path: Path, command: str) -> None:
    """Create the lock file atomically; take over a stale one; VweError when it is held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
          "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_holder(path)
            if not is_stale(holder):
                raise VweError(
                    f"run_dir {path.parent} is in use by `vwe {holder.get('command')}` (pid "
                    f"{holder.get('pid')} on {holder.get('host')}, since {holder.get('since')});"
                    f" wait for it to finish or choose another run_dir (if no such process "
                    f"runs, delete {path})") from None
            log.info("taking over the stale lock %s (pid %s is gone)", path,
                     holder.get("pid") if holder else "?")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(me, handle)
        return
    raise VweError(f"could not take the lock {path}; another process keeps recreating it")


def release(path: Path) -> None:
    holder = read_holder(path)
    if holder is not None and holder.get("pid") == os.getpid() \
            and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


@contextmanager
def run_dir_lock(path: Path, command: str, enabled: bool = True) -> Iterator[None]:
    """Hold the run directory's lock for the block (a no-op when not `enabled`)."""
    if not enabled:
        yield
        return
    acquire(path, command)
    try:
        yield
    finally:
        release(path)
