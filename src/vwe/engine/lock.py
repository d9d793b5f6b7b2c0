"""One writer per run directory: `<run_dir>/.lock` names the process that holds it.

Two commands writing one run_dir would mix their files, so the second is refused with a line
naming the holder. A lock left by a process that died (kill -9, a crash, a lost node) is detected
(its pid no longer runs on this host) and taken over. Under torchrun the job holds one lock,
taken by rank 0.

Taking the lock is one atomic step: the holder's line is written to a private file first and
hard-linked to `.lock` (a link fails when `.lock` exists), so nobody ever reads a lock without
its content. Deciding that a lock is stale and replacing it happens under an exclusive `flock`
on the run directory itself, so two processes never both take over the same dead holder. A lock
file that cannot be read was not written by vwe and is never taken over: the error names it.
"""

from __future__ import annotations

import fcntl
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
    return holder if isinstance(holder, dict) and "pid" in holder else None


def is_stale(holder: dict[str, Any]) -> bool:
    """A lock whose process is gone (same host) or is this process (a leftover of ours)."""
    if holder.get("host") != socket.gethostname():
        return False  # cannot check another host's processes
    pid = int(holder.get("pid", 0))
    return pid == os.getpid() or not pid_alive(pid)


@contextmanager
def guarded(path: Path) -> Iterator[None]:
    """Exclusive section for every decision about `path`: a blocking `flock` on its folder
    (a folder never goes away while the lock file is in it, unlike a guard file)."""
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def link_with_content(path: Path, content: str) -> bool:
    """Create `path` holding `content` in one step; False when it exists already."""
    private = path.with_name(f"{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    private.write_text(content, encoding="utf-8")
    try:
        os.link(private, path)
        return True
    except FileExistsError:
        return False
    finally:
        private.unlink(missing_ok=True)


def refuse(path: Path, holder: dict[str, Any] | None) -> VweError:
    if holder is None:
        return VweError(f"the lock file {path} cannot be read (it was not written by vwe); if no "
                        f"vwe command uses {path.parent}, delete {path}")
    return VweError(
        f"run_dir {path.parent} is in use by `vwe {holder.get('command')}` (pid "
        f"{holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}); wait for it "
        f"to finish or choose another run_dir (if no such process runs, delete {path})")


def acquire(path: Path, command: str) -> None:
    """Take the lock atomically with its content; take over a dead holder's; VweError if held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                     "since": time.strftime("%Y-%m-%d %H:%M:%S")})
    with guarded(path):
        if link_with_content(path, me):
            return
        holder = read_holder(path)
        if holder is None or not is_stale(holder):
            raise refuse(path, holder)
        log.info("taking over the stale lock %s (pid %s is gone)", path, holder.get("pid"))
        path.unlink()
        if not link_with_content(path, me):  # someone without the guard (an older vwe) won
            raise refuse(path, read_holder(path))


def release(path: Path) -> None:
    with guarded(path):
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
