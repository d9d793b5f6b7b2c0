"""The run-directory lock: a live holder refuses a second writer; a dead one's lock is taken;
processes racing for it never both hold it."""

import json
import multiprocessing
import socket
import subprocess
import sys
import time

import pytest

from vwe.cli import main
from vwe.engine.lock import acquire, release
from vwe.errors import VweError


def write_lock(run_dir, pid):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                               "command": "make-cam", "since": "earlier"}))


def make_dataset_args(tmp_path):
    return ["make-dataset", f"data.root={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}",
            "synthetic.size=tiny"]


def test_a_live_holder_refuses_and_a_dead_one_is_taken_over(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(tmp_path / "run", holder.pid)
        assert main(make_dataset_args(tmp_path)) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"in use by `vwe make-cam` (pid {holder.pid}" in err and ".lock" in err
        assert not (tmp_path / "data").exists()  # refused before any work
    finally:
        holder.kill()
        holder.wait()
    assert main(make_dataset_args(tmp_path)) == 0  # its pid is gone: the lock is stale
    assert not (tmp_path / "run" / ".lock").exists()  # released at the end


@pytest.mark.parametrize("content", ["", "not json", '{"pid": '])
def test_an_empty_or_unreadable_lock_is_never_taken_over(tmp_path, capsys, content):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").write_text(content)
    assert main(make_dataset_args(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "cannot be read" in err and "delete" in err and ".lock" in err
    assert (tmp_path / "run" / ".lock").read_text() == content
    assert not (tmp_path / "data").exists()


def race_for_lock(lock, start, holding, most_at_once):
    """One contender: wait for the start, try the lock, hold it a moment, note how many hold it."""
    start.wait()
    try:
        acquire(lock, "race")
    except VweError:
        return
    with holding.get_lock():
        holding.value += 1
        most_at_once.value = max(most_at_once.value, holding.value)
    time.sleep(0.02)  # the others are still trying while this one holds it
    with holding.get_lock():
        holding.value -= 1
    release(lock)


@pytest.mark.parametrize("stale_first", [False, True], ids=["free", "dead-holder"])
def test_processes_racing_for_the_lock_never_both_hold_it(tmp_path, stale_first):
    context = multiprocessing.get_context("fork")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs: its lock is stale
    for trial in range(25):
        lock = tmp_path / f"run{trial}" / ".lock"
        if stale_first:
            write_lock(lock.parent, dead.pid)
        start = context.Barrier(4)
        holding, most_at_once = context.Value("i", 0), context.Value("i", 0)
        racers = [context.Process(target=race_for_lock, args=(lock, start, holding, most_at_once))
                  for _ in range(4)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(30)
        assert most_at_once.value == 1, f"trial {trial}: {most_at_once.value} holders at once"
        assert not lock.exists()  # released by its holder
