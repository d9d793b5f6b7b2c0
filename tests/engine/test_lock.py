"""The run-directory lock: a live holder refuses a second writer; a dead one's lock is taken."""

import json
import socket
import subprocess
import sys

from vwe.cli import main


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


def test_an_unreadable_lock_is_stale(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").write_text("not json")
    assert main(make_dataset_args(tmp_path)) == 0
