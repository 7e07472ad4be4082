"""Keeping freed memory (nuclei_core/allocator.py): a large array comes from the heap, not a fresh mapping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# In a fresh interpreter: apply (or not) the settings, allocate 64 MiB and read glibc's own accounting.
PROBE = """
import ctypes, json, sys
import numpy as np
from nuclei_core.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

def allocate(applied):
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = MallInfo2
    block = np.ones(64 << 20, dtype=np.uint8)
    info = mallinfo2()
    print(json.dumps({"applied": applied, "mapped": info.hblkhd, "heap": info.arena}))

if sys.argv[1] == "training-script":
    from nuclei_core.training.run_arguments import run_training_script
    run_training_script(lambda: allocate(None))
else:
    allocate(keep_freed_memory() if sys.argv[1] == "apply" else None)
"""


def _probe(mode: str, **environment: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True,
                            check=True, env={**os.environ, **environment})
    return json.loads(result.stdout)


def test_large_arrays_come_from_the_heap_once_freed_memory_is_kept():
    kept, default = _probe("apply"), _probe("leave")
    assert kept["applied"] is True
    assert kept["mapped"] < 64 << 20 <= kept["heap"]
    assert default["mapped"] >= 64 << 20  # glibc's default maps it afresh (and unmaps it when freed)


def test_training_scripts_keep_freed_memory():
    assert _probe("training-script")["mapped"] < 64 << 20


def test_the_users_own_malloc_settings_win():
    probe = _probe("apply", MALLOC_MMAP_MAX_="65536")
    assert probe["applied"] is False
    assert probe["mapped"] >= 64 << 20
