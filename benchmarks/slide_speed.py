"""Whole-slide speed: UDNetDetection vs HistomicsTK's NucleiDetection CLI on the same slide and machine.

Both run as the DSA runs them (a fresh process each). Reports wall time, tissue megapixels per second,
nuclei per second and peak resident memory of the process tree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from nuclei_core.data.public_sets import SHARED_DATA  # noqa: E402
from nuclei_core.engine.slide import Slide  # noqa: E402
from nuclei_core.engine.tiling import plan_tiles  # noqa: E402
from nuclei_core.models.udnet import UDNet  # noqa: E402

SAMPLE = ROOT.parent / "shared/data/wsi/CMU-1-Small-Region.svs"


def timed(command: list[str], extra_environment: dict[str, str] | None = None,
          cwd: Path = ROOT) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, process tree) of ``command`` run in ``cwd``; fails loudly on a non-zero exit.
    The command runs with the machine's default thread counts, whatever this process was limited to, plus
    ``extra_environment``."""
    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    environment.update(extra_environment or {})
    started = time.time()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=environment)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    seconds = time.time() - started
    if process.returncode:
        raise SystemExit(f"{command[:4]} failed: {process.stderr.read().decode()[-2000:]}")
    return seconds, peak / 2 ** 20


def count_elements(annotation: Path) -> int:
    """The nuclei of a CLI's annotation file (its density maps left out)."""
    payload = json.loads(annotation.read_text())
    documents = payload if isinstance(payload, list) else [payload]
    return sum(len(d["elements"]) for d in documents if d.get("attributes", {}).get("content", "nuclei") == "nuclei")


def tissue_megapixels(slide_path: str) -> float:
    """Tissue area of the slide in base-resolution megapixels (our tissue mask, 20x tile plan)."""
    return plan_tiles(Slide(slide_path), 20.0, 1024, 32, None, 0.1).tissue_base_pixels / 1e6


def cli_variant_rows(slide_path: str, cli: str | dict[str, str], variants: dict[str, list[str]], device: str,
                     label: str) -> list[dict]:
    """A CLI (or each variant's own CLI) on a whole slide per variant of its options (fresh process each, as the
    DSA runs it)."""
    tissue_mp = tissue_megapixels(slide_path)
    cli_of = cli if isinstance(cli, dict) else dict.fromkeys(variants, cli)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.anot"
        for name, options in variants.items():
            seconds, peak = timed([sys.executable, "-m", "plugins", cli_of[name], slide_path, str(out), *options,
                                   "--device", device])
            nuclei = count_elements(out)
            rows.append({label: name, "device": device, "wall s": round(seconds, 1),
                         "tissue MP/s": round(tissue_mp / seconds, 4), "nuclei": nuclei,
                         "nuclei/s": round(nuclei / seconds, 1), "peak RSS MiB": round(peak)})
    return rows


def accuracy_and_speed_parser(doc: str, slide: bool = True) -> argparse.ArgumentParser:
    """The arguments of a benchmark that scores test images and (with ``slide``) times a CLI on a slide: --data,
    --slide, --device."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder")
    if slide:
        parser.add_argument("--slide", default=str(SAMPLE), help="the slide the CLI is timed on")
    parser.add_argument("--device", default="cpu")
    return parser


def cli_speed_section(slide_path: str, cli: str | dict[str, str], variants: dict[str, list[str]], device: str,
                      label: str, what: str) -> tuple[str, list[dict], float]:
    """A Markdown section timing ``cli`` (``what`` it does) on the slide per variant, its rows and the tissue MP."""
    rows = cli_variant_rows(slide_path, cli, variants, device, label)
    tissue_mp = tissue_megapixels(slide_path)
    section = (f"## Whole slide `{Path(slide_path).name}` ({tissue_mp:.2f} tissue MP): {what}, "
               f"CLI in a fresh process\n\n{table(rows)}\n")
    return section, rows, tissue_mp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slide", default=str(SAMPLE))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs for each CLI")
    parser.add_argument("--name", default="slide_speed_cpu", help="result file name in benchmarks/results")
    parser.add_argument("--skip-histomicstk", action="store_true")
    args = parser.parse_args()
    slide = Slide(args.slide)
    plan = plan_tiles(slide, UDNet.analysis_magnification, 1024, UDNet.halo, None, 0.1)
    tissue_mp = plan.tissue_base_pixels / 1e6
    histomicstk = Path(sys.executable).with_name("histomicstk")
    runs = {f"UDNetDetection (ours, {weights} weights)": lambda out, weights=weights: [
        sys.executable, "-m", "plugins", "UDNetDetection", args.slide, str(out), "--device", args.device,
        "--training_set", weights] for weights in ("Multi-organ", "Colorectal")}
    if not args.skip_histomicstk:
        runs["HistomicsTK NucleiDetection 1.4.0"] = lambda out: [
            str(histomicstk), "NucleiDetection", args.slide, str(out), "--analysis_mag", "20",
            "--scheduler", "multithreading", "--num_workers", "-1"]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, command in runs.items():
            out = Path(folder) / "out.anot"
            best = min((timed(command(out)) for _ in range(args.repeats)), key=lambda r: r[0])
            nuclei = count_elements(out)
            rows.append({"CLI": label, "device": args.device if "ours" in label else "cpu",
                         "wall s": round(best[0], 2), "tissue MP/s": round(tissue_mp / best[0], 3),
                         "nuclei": nuclei, "nuclei/s": round(nuclei / best[0], 1),
                         "peak RSS MiB": round(best[1])})
    body = (f"Slide `{Path(args.slide).name}`: {slide.width} x {slide.height} px at {slide.base_magnification:g}x, "
            f"{tissue_mp:.2f} tissue megapixels (our tissue mask). Each CLI runs as a fresh process (start-up, "
            f"model load and output writing included), best of {args.repeats}.\n\n{table(rows)}\n")
    print(write_result(args.name, "Whole-slide speed on the sample slide", body, {"rows": rows, "tissue_mp": tissue_mp}))
    print(table(rows))


if __name__ == "__main__":
    main()
