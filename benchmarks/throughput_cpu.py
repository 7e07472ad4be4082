"""CPU throughput of every CLI's defaults on the sample slide: this tree against an earlier one, and UD-Net against
HistomicsTK's NucleiDetection, all in one run.

Each run is a fresh process as the DSA starts it (start-up, model load and output writing included), with its
defaults. The earlier tree (``--baseline``, by default the code before the throughput work of issue 48: float32,
1024 px tiles, tiles padded to their batch's largest, glibc's default malloc) is checked out into a temporary git
worktree and run with the same environment (.venv, the same compiled modules); runs alternate between the trees,
and each figure is the median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from benchmarks.slide_speed import SAMPLE, count_elements, timed, tissue_megapixels  # noqa: E402

BASELINE = "c14ad10"  # the tree issue 48 measured (before the allocator, bfloat16 by default and tile shapes)
HISTOMICSTK = "HistomicsTK NucleiDetection 1.4.0"
# label -> the CLI and its options (defaults otherwise)
CLIS = {"UDNetDetection": ["UDNetDetection"], "DCRNClassification": ["DCRNClassification"],
        "R2UNetSegmentation": ["R2UNetSegmentation"], "HoVerNetSegmentation": ["HoVerNetSegmentation"],
        "CascadeGCNDetection (CP-CNN)": ["CascadeGCNDetection", "--detector", "CP-CNN"],
        "CascadeGCNDetection": ["CascadeGCNDetection"], "FasterRCNNDetection": ["FasterRCNNDetection"],
        "GraphAttentionSegmentation": ["GraphAttentionSegmentation"],
        "FasterRCNNDetection (Dask, 1 local worker)": ["FasterRCNNDetection", "--scheduler", "multiprocessing",
                                                       "--num_workers", "1"],
        "FasterRCNNDetection (Dask, 2 local workers)": ["FasterRCNNDetection", "--scheduler", "multiprocessing",
                                                        "--num_workers", "2"]}
DASK_PAIR = ("FasterRCNNDetection (Dask, 1 local worker)", "FasterRCNNDetection (Dask, 2 local workers)")


def cli_command(cli: list[str], slide: str, out: Path) -> list[str]:
    """A CLI of this suite on the whole slide, CPU, defaults otherwise."""
    return [sys.executable, "-m", "plugins", cli[0], slide, str(out), *cli[1:], "--device", "cpu"]


def histomicstk_command(slide: str, out: Path) -> list[str]:
    """HistomicsTK's NucleiDetection CLI at 20x with its defaults, as slide_speed.py runs it."""
    return [str(Path(sys.executable).with_name("histomicstk")), "NucleiDetection", slide, str(out),
            "--analysis_mag", "20", "--scheduler", "multithreading", "--num_workers", "-1"]


def worktree(revision: str, folder: Path) -> Path:
    """A detached checkout of ``revision`` in ``folder`` (removed with :func:`remove_worktree`)."""
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), revision], cwd=ROOT, check=True,
                   capture_output=True)
    return folder


def remove_worktree(folder: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, check=False, capture_output=True)


def measure(runs: dict[str, tuple[list[str], Path]], out: Path, repeats: int) -> dict[str, dict]:
    """Median wall seconds, the largest peak RSS and the nuclei of each run (command, working folder), the runs
    alternating within each repeat."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    peaks: dict[str, list[float]] = {name: [] for name in runs}
    nuclei: dict[str, int] = {}
    for _ in range(repeats):
        for name, (command, folder) in runs.items():
            wall, peak = timed(command, cwd=folder)
            seconds[name].append(wall)
            peaks[name].append(peak)
            nuclei[name] = count_elements(out)
            print(f"{name}: {wall:.1f} s, {nuclei[name]} nuclei", file=sys.stderr, flush=True)
    return {name: {"wall s": round(statistics.median(seconds[name]), 2), "runs s": [round(s, 2) for s in seconds[name]],
                   "peak RSS MiB": round(max(peaks[name])), "nuclei": nuclei[name]} for name in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slide", default=str(SAMPLE))
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command; the median is reported")
    parser.add_argument("--clis", nargs="+", default=list(CLIS), choices=list(CLIS))
    parser.add_argument("--name", default="throughput_cpu", help="result file name in benchmarks/results")
    args = parser.parse_args()
    tissue_mp = tissue_megapixels(args.slide)
    with tempfile.TemporaryDirectory(prefix="throughput-") as scratch:
        out = Path(scratch) / "out.anot"
        baseline = worktree(args.baseline, Path(scratch) / "baseline")
        try:
            runs = {HISTOMICSTK: (histomicstk_command(args.slide, out), ROOT)}
            for label in args.clis:
                runs[f"{label}|before"] = (cli_command(CLIS[label], args.slide, out), baseline)
                runs[f"{label}|now"] = (cli_command(CLIS[label], args.slide, out), ROOT)
            found = measure(runs, out, args.repeats)
        finally:
            remove_worktree(baseline)
    reference = found[HISTOMICSTK]
    rows = [{"CLI": HISTOMICSTK, "before s": "", "now s": reference["wall s"], "speed-up": "",
             "tissue MP/s now": round(tissue_mp / reference["wall s"], 3), "nuclei before / now": reference["nuclei"],
             "peak RSS MiB before / now": reference["peak RSS MiB"]}]
    for label in args.clis:
        before, now = found[f"{label}|before"], found[f"{label}|now"]
        rows.append({"CLI": label, "before s": before["wall s"], "now s": now["wall s"],
                     "speed-up": round(before["wall s"] / now["wall s"], 2),
                     "tissue MP/s now": round(tissue_mp / now["wall s"], 3),
                     "nuclei before / now": f"{before['nuclei']} / {now['nuclei']}",
                     "peak RSS MiB before / now": f"{before['peak RSS MiB']} / {now['peak RSS MiB']}"})
    summary = ""
    if "UDNetDetection" in args.clis:
        ratio = reference["wall s"] / found["UDNetDetection|now"]["wall s"]
        before = reference["wall s"] / found["UDNetDetection|before"]["wall s"]
        summary = (f"UDNetDetection runs the slide at **{ratio:.2f}x** HistomicsTK NucleiDetection's speed "
                   f"(before: {before:.2f}x; goal: 2x).\n\n")
    if set(DASK_PAIR) <= set(args.clis):
        ratios = {tree: found[f"{DASK_PAIR[0]}|{tree}"]["wall s"] / found[f"{DASK_PAIR[1]}|{tree}"]["wall s"]
                  for tree in ("before", "now")}
        summary += (f"Two local Dask workers run FasterRCNNDetection **{ratios['now']:.2f}x** as fast as one "
                    f"(before: {ratios['before']:.2f}x; goal: 1.6x).\n\n")
    body = (f"Slide `{Path(args.slide).name}` ({tissue_mp:.2f} tissue megapixels), CPU, every CLI with its defaults "
            f"in a fresh process; before = git revision `{args.baseline}` in a worktree, same environment; median "
            f"of {args.repeats} alternating runs.\n\n{summary}{table(rows)}\n")
    print(write_result(args.name, "CPU throughput: every CLI's defaults, before and now", body,
                       {"baseline": args.baseline, "tissue_megapixels": tissue_mp, "runs": found}))


if __name__ == "__main__":
    main()
