"""Keep freed memory in the process (docs/performance.md#make-cam).

glibc serves every allocation above 32 MB (the largest activations of a ResNet at VOC size) with
a fresh `mmap` and gives it back on free, so each forward touches new pages: about a million
minor page faults per make-cam image, a fifth of its time in the kernel. With mmap off and no
trimming, freed blocks stay in the heap and the next forward reuses them; the price is that the
process keeps its peak size until it exits, which suits one-stage processes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse (no mmap, no trim); False where the C
    library is not glibc (nothing changes there)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, NEVER_TRIM) == 1
    log.debug("malloc keeps freed memory: %s", done)
    return done
