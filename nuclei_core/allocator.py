"""glibc malloc settings for tile-sized tensors: keep freed memory for the next layer instead of unmapping it.

By default glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and
returns it with ``munmap`` when freed, so each of a network's large activations is mapped, zero-filled by the
kernel page by page and unmapped again, layer after layer, tile after tile. With mmap off for malloc and a
high trim threshold, the same memory is reused from the heap (what ``MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=...`` does, set from inside the process, so that every way of starting a CLI gets
it: the host, the image, a DSA job). Figures: benchmarks/results/allocator.md.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30  # freed memory at the top of the heap is kept up to this much
USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def keep_freed_memory() -> bool:
    """Apply the settings above to this process's glibc malloc; False (nothing changed) off glibc or where the
    user set glibc's own ``MALLOC_*`` variables, which then win."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
