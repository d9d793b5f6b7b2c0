"""keep_freed_memory: glibc malloc told to keep freed blocks (docs/performance.md#make-cam)."""

import subprocess
import sys


def test_keep_freed_memory_applies_on_glibc_and_changes_no_result():
    code = ("import sys, torch; from vwe.engine.memory import keep_freed_memory;"
            "torch.manual_seed(0); a = torch.randn(3000, 3000) @ torch.randn(3000, 50);"
            "ok = keep_freed_memory();"
            "torch.manual_seed(0); b = torch.randn(3000, 3000) @ torch.randn(3000, 50);"
            "print(ok, torch.equal(a, b))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    glibc = sys.platform.startswith("linux")
    assert done.stdout.split() == [str(glibc), "True"]
