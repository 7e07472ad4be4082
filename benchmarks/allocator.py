"""What keeping freed memory (nuclei_core/allocator.py) does to a CLI on the sample slide: wall time and peak RSS.

Each CLI runs as a fresh process, as the DSA runs it, alternately with glibc's default malloc behaviour
(``MALLOC_MMAP_MAX_=65536``, glibc's own default, which the CLI then leaves alone) and with the suite's
settings, so that both see the same machine; the nuclei found must be the same.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from benchmarks.slide_speed import SAMPLE, count_elements, timed  # noqa: E402

GLIBC_DEFAULT = {"MALLOC_MMAP_MAX_": "65536"}
CLIS = ("UDNetDetection", "R2UNetSegmentation", "HoVerNetSegmentation")


def paired_rows(cli: str, slide: str, runs: int) -> list[dict]:
    """``cli`` on ``slide`` ``runs`` times each way, alternated; one row per way (median wall, largest peak)."""
    figures: dict[str, list[tuple[float, float]]] = {"glibc default": [], "kept (the suite's default)": []}
    nuclei = set()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.anot"
        for _ in range(runs):
            for way in figures:
                overrides = GLIBC_DEFAULT if way == "glibc default" else {}
                figures[way].append(timed([sys.executable, "-m", "plugins", cli, slide, str(out)], overrides))
                nuclei.add(count_elements(out))
    if len(nuclei) != 1:
        raise SystemExit(f"{cli}: the nuclei differ between the two ways: {sorted(nuclei)}")
    medians = {way: statistics.median(seconds for seconds, _ in runs_) for way, runs_ in figures.items()}
    return [{"CLI": cli, "malloc": way, "median wall s": round(medians[way], 1),
             "speed-up": round(medians["glibc default"] / medians[way], 2),
             "peak RSS MiB": round(max(peak for _, peak in runs_)), "nuclei": min(nuclei)}
            for way, runs_ in figures.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slide", default=str(SAMPLE))
    parser.add_argument("--runs", type=int, default=3, help="runs each way, alternated")
    parser.add_argument("--clis", nargs="+", default=list(CLIS))
    args = parser.parse_args()
    rows = [row for cli in args.clis for row in paired_rows(cli, args.slide, args.runs)]
    body = (f"Sample slide `{Path(args.slide).name}`, CPU, defaults otherwise; fresh process per run, {args.runs} "
            f"runs each way alternated; {os.cpu_count()} cores.\n\n{table(rows)}\n")
    print(write_result("allocator", "Keeping freed memory: glibc malloc settings", body, {"rows": rows}))
    print(body)


if __name__ == "__main__":
    main()
