"""Process-group lifetime: teardown really frees the gloo group a DDP stage used."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Each rank joins through setup(), takes one DDP step, leaves through teardown(), and lists
# its threads: gloo's worker and transport threads must be gone before interpreter shutdown,
# where a surviving one can abort a finished run.
RANK_SCRIPT = """
import os, sys, torch
from torch.nn.parallel import DistributedDataParallel
from vwe.engine.distributed import setup, teardown

def thread_names():
    return sorted(open(f"/proc/self/task/{t}/comm").read().strip()
                  for t in os.listdir("/proc/self/task"))

ctx = setup("cpu")
assert ctx.distributed
net = DistributedDataParallel(torch.nn.Linear(3, 2))
net(torch.randn(4, 3)).sum().backward()
del net
running = [name for name in thread_names() if "gloo" in name]
teardown(ctx)
left = [name for name in thread_names() if "gloo" in name]
print(f"rank {ctx.rank} gloo threads before teardown: {len(running)}, after: {left}",
      file=sys.stderr)
sys.exit(1 if left or not running else 0)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="lists threads through /proc")
def test_teardown_frees_the_gloo_group_after_ddp(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("after: []") == 2
