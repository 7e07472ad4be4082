"""What every benchmark result file states: the machine, the date, the command; plus a Markdown table."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import psutil
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """CPU model, cores, memory, GPU (if any) and torch version in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    memory = psutil.virtual_memory().total / 2 ** 30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {gpu}; Python {platform.python_version()}, torch {torch.__version__}"


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of dicts sharing the same keys (None shown as a dash)."""
    keys = list(rows[0])
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else "—" if v is None else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def write_result(name: str, title: str, body: str, data: dict[str, Any]) -> Path:
    """Write ``results/<name>.md`` (with machine, date, command) and ``results/<name>.json``."""
    RESULTS.mkdir(exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    today = datetime.date.today().isoformat()
    header = f"# {title}\n\n- Machine: {machine()}\n- Date: {today}\n- Command: `{command}`\n\n"
    path = RESULTS / f"{name}.md"
    path.write_text(header + body.rstrip() + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(
        {"machine": machine(), "date": today, "command": command, **data}, indent=1, default=str))
    return path
