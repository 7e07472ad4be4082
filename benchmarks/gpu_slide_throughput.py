"""A 40x whole slide end to end on a GPU: tissue megapixels per second, how busy the GPU is, and end to end against
the network alone, for each detector and segmenter.

The slide is synthetic: the sample slide enlarged to 40x (0.25 um/px) and repeated to ``--width`` x ``--height``
(about 100k x 80k px by default, tissue as in the sample), written by pyvips as a tiled JPEG pyramid TIFF. Each
model runs in this process through the engine as its CLI runs it (its default tile size, tissue threshold 0.1,
precision auto), with the pipeline's workers chosen for the device. Made to run once in a short GPU session:

    python benchmarks/gpu_slide_throughput.py --device cuda

and on the CPU on a small crop (what the test suite does), so that it works the first time it meets a GPU:

    python benchmarks/gpu_slide_throughput.py --device cpu --width 4000 --height 3000 --models UD-Net
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pipeline_throughput import MODELS, prepared_plan_batches, timed_forward  # noqa: E402
from benchmarks.report import table, write_result  # noqa: E402
from benchmarks.slide_speed import SAMPLE  # noqa: E402
from nuclei_core.engine.analysis import EngineSettings, ModelSpec, analyse_slide  # noqa: E402
from nuclei_core.engine.slide import Slide  # noqa: E402

MICRONS_PER_PIXEL_40X = 0.25
FORWARD_SAMPLE_BATCHES = 8  # batches timed for the network-alone rate


def synthetic_slide(sample: Path, width: int, height: int, path: Path, enlarge: float = 2.0) -> Path:
    """The sample slide (20x) enlarged ``enlarge`` times (to 40x by default) and repeated to ``width`` x ``height``:
    a tiled JPEG pyramid TIFF recording its pixel size (0.25 um/px at 40x)."""
    import pyvips

    tile = pyvips.Image.new_from_file(str(sample), access="sequential")[0:3]
    tile = (tile.resize(enlarge, kernel="linear") if enlarge != 1 else tile).copy()
    for field in tile.get_fields():  # the sample's own description (Aperio's AppMag = 20) would name it 20x
        if field == "image-description" or field.startswith(("openslide.", "aperio.")):
            tile.remove(field)
    across, down = -(-width // tile.width), -(-height // tile.height)
    slide = tile.replicate(across, down).crop(0, 0, width, height)
    pixels_per_mm = 1000 / (MICRONS_PER_PIXEL_40X * 2 / enlarge)
    slide.tiffsave(str(path), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg", Q=90,
                   bigtiff=True, xres=pixels_per_mm, yres=pixels_per_mm)
    return path


class GPUBusy:
    """The GPU's utilisation sampled by nvidia-smi every 200 ms while it runs (None without nvidia-smi)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.process: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None

    def __enter__(self) -> "GPUBusy":
        if shutil.which("nvidia-smi"):
            self.process = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                             "-lms", "200"], stdout=subprocess.PIPE, text=True)
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip().isdigit():
                self.samples.append(float(line))

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait()

    @property
    def busy_fraction(self) -> float | None:
        """Mean utilisation over the run, 0-1."""
        return round(float(np.mean(self.samples)) / 100, 3) if self.samples else None


def network_seconds_per_tile(spec: ModelSpec, slide: Slide, settings: EngineSettings) -> float:
    """The network alone: seconds per tile over the plan's first batches, read beforehand."""
    batches = prepared_plan_batches(spec.build(), slide, settings, None, FORWARD_SAMPLE_BATCHES)
    seconds, _ = timed_forward(spec.build(), batches)
    return seconds / sum(len(batch) for batch in batches)


def model_rows(slide: Slide, labels: list[str], device: str, batch_size: int) -> list[dict]:
    """One row per model: the slide end to end, the GPU's busy fraction and the network-alone rate."""
    rows = []
    for label in labels:
        model_class, weights, tile_size = MODELS[label]
        spec = ModelSpec(model_class, str(weights), device)
        settings = EngineSettings(tile_size=tile_size, min_fgnd_frac=0.1, batch_size=batch_size, show_progress=False)
        per_tile = network_seconds_per_tile(spec, slide, settings)
        with GPUBusy() as busy:
            result = analyse_slide(slide, spec, None, settings)
        tiles = len(result.plan.tiles)
        rows.append({"model": label, "device": device, "tiles": tiles, "end-to-end s": round(result.seconds, 1),
                     "tissue MP/s": round(result.plan.tissue_base_pixels / 1e6 / result.seconds, 2),
                     "network alone s": round(per_tile * tiles, 1),
                     "end-to-end / network alone": round(per_tile * tiles / result.seconds, 2),
                     "GPU busy": busy.busy_fraction if busy.busy_fraction is not None else "n/a",
                     "nuclei": len(result.nuclei)})
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--width", type=int, default=100_000)
    parser.add_argument("--height", type=int, default=80_000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--name", default="gpu_slide_throughput", help="result file name in benchmarks/results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="synthetic-slide-") as folder:
        started = time.time()
        path = synthetic_slide(SAMPLE, args.width, args.height, Path(folder) / "synthetic_40x.tiff")
        made = time.time() - started
        slide = Slide(path)
        rows = model_rows(slide, args.models, args.device, args.batch_size)
    body = (f"A synthetic 40x slide, {args.width} x {args.height} px (the sample slide enlarged and repeated; written "
            f"in {made:.0f} s), batches of {args.batch_size}, each model at its CLI's default tile size, precision "
            f"auto, the pipeline's workers chosen for the device.\n\n{table(rows)}\n")
    print(write_result(args.name, "A 40x whole slide end to end", body, {"rows": rows, "width": args.width,
                                                                          "height": args.height}))


if __name__ == "__main__":
    main()
