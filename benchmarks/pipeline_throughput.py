"""Does the slide pipeline keep the network fed? Feed rate against model-only rate, and end to end, per model.

For each model on the sample slide (or ``--region``), in this process:
- model only: the network's forward passes alone, on tiles read and batched beforehand (tiles/s);
- feed rate: the whole pipeline (reading, preparing, post-processing, seam merge) with the forward pass replaced
  by the outputs the network gave for the same batches, recorded in the model-only pass: what reading and
  post-processing sustain, for each choice of reader and post-processing processes;
- end to end: the real pipeline with those workers, and its rate over the model-only rate (goal: at least 0.9).
On a GPU the model-only rate is the one to beat; on this CPU the network is far slower than the rest.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from benchmarks.slide_speed import SAMPLE  # noqa: E402
from nuclei_core.engine.analysis import EngineSettings, ModelSpec, analyse_slide, batches_of_one_shape  # noqa: E402
from nuclei_core.engine.pipeline import Workers  # noqa: E402
from nuclei_core.engine.reading import colour_sample, prepare_tiles  # noqa: E402
from nuclei_core.engine.region import parse_region  # noqa: E402
from nuclei_core.engine.slide import Slide  # noqa: E402
from nuclei_core.engine.tiling import plan_tiles  # noqa: E402
from nuclei_core.models.hovernet import DEFAULT_WEIGHTS as HOVERNET_WEIGHTS  # noqa: E402
from nuclei_core.models.hovernet import HoVerNet  # noqa: E402
from nuclei_core.models.segmenter import DEFAULT_WEIGHTS as SEGMENTER_WEIGHTS  # noqa: E402
from nuclei_core.models.segmenter import NucleusSegmenter  # noqa: E402
from nuclei_core.models.udnet import DEFAULT_WEIGHTS as UDNET_WEIGHTS  # noqa: E402
from nuclei_core.models.udnet import UDNet  # noqa: E402

MODELS = {"UD-Net": (UDNet, UDNET_WEIGHTS, 512), "R2U-Net": (NucleusSegmenter, SEGMENTER_WEIGHTS["R2U-Net"], 1024),
          "HoVer-Net (SE + CA)": (HoVerNet, HOVERNET_WEIGHTS["SE + CA"], 1024)}  # class, weights, default tile size
WORKER_CHOICES = (Workers(0, 0), Workers(1, 1), Workers(2, 2))


@dataclass
class ReplayedNetwork:
    """A model whose forward pass hands back recorded outputs, batch after batch, in the order the pipeline asks:
    everything else (preparation, post-processing, the seam merge) is the real model's."""

    model: Any
    outputs: list[np.ndarray]

    def __post_init__(self) -> None:
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def predict_outputs(self, tiles: np.ndarray) -> np.ndarray:
        output = self.outputs[self.calls]
        self.calls += 1
        assert output.shape[0] == tiles.shape[0], "the pipeline asked for other batches than were recorded"
        return output

    def predict_at(self, tiles: np.ndarray, origins: list[tuple[int, int]], scale: float) -> list:
        return [self.model.postprocess_tile(output, tile) for output, tile in zip(self.predict_outputs(tiles), tiles)]


@dataclass(frozen=True)
class ReplaySpec:
    """A ModelSpec whose model is a :class:`ReplayedNetwork` (built once, here)."""

    replayed: ReplayedNetwork
    device: str = "cpu"

    def build(self) -> ReplayedNetwork:
        self.replayed.calls = 0
        return self.replayed


def prepared_plan_batches(model: Any, slide: Slide, settings: EngineSettings, region,
                          most: int | None = None) -> list[np.ndarray]:
    """The plan's batches (the first ``most``), read and prepared as the engine does, each stacked."""
    plan = plan_tiles(slide, model.analysis_magnification, settings.tile_size, model.halo, region,
                      settings.min_fgnd_frac)
    preparation = model.tile_preparation(lambda: colour_sample(slide, plan.tiles, plan.scale))
    return [np.stack(prepare_tiles(slide, preparation, batch, plan.scale))
            for batch in batches_of_one_shape(plan.tiles, settings.batch_size)[:most]]


def timed_forward(model: Any, batches: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    """Seconds of the forward passes alone over ``batches`` (after a warm-up on the first: first-call allocations)
    and their outputs (numpy: a GPU has finished when each returns)."""
    model.predict_outputs(batches[0])
    started = time.perf_counter()
    outputs = [model.predict_outputs(batch) for batch in batches]
    return time.perf_counter() - started, outputs


def model_only(model: Any, slide: Slide, settings: EngineSettings, region) -> tuple[float, int, list[np.ndarray]]:
    """Seconds of the forward passes alone over the plan's batches (read beforehand), the tiles, and the outputs."""
    batches = prepared_plan_batches(model, slide, settings, region)
    seconds, outputs = timed_forward(model, batches)
    return seconds, sum(len(batch) for batch in batches), outputs


def rows_for(label: str, slide: Slide, region, device: str, batch_size: int) -> list[dict]:
    model_class, weights, tile_size = MODELS[label]
    spec = ModelSpec(model_class, str(weights), device)
    settings = EngineSettings(tile_size=tile_size, min_fgnd_frac=0.1, batch_size=batch_size, show_progress=False)
    seconds, tiles, outputs = model_only(spec.build(), slide, settings, region)
    model_rate = tiles / seconds
    rows = []
    for workers in WORKER_CHOICES:
        with_workers = replace(settings, readers=workers.readers, postprocessors=workers.postprocessors)
        replayed = ReplaySpec(ReplayedNetwork(spec.build(), outputs), device)
        feed = analyse_slide(slide, replayed, region, with_workers)  # type: ignore[arg-type]
        real = analyse_slide(slide, spec, region, with_workers)
        rows.append({"model": label, "device": device, "tiles": tiles, "readers": workers.readers,
                     "post-processors": workers.postprocessors, "model-only tiles/s": round(model_rate, 3),
                     "feed tiles/s": round(tiles / feed.seconds, 3),
                     "feed / model-only": round(tiles / feed.seconds / model_rate, 2),
                     "end-to-end tiles/s": round(tiles / real.seconds, 3),
                     "end-to-end / model-only": round(tiles / real.seconds / model_rate, 2),
                     "nuclei": len(real.nuclei)})
        assert len(feed.nuclei) == len(real.nuclei), "replayed outputs gave other nuclei than the network"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slide", default=str(SAMPLE))
    parser.add_argument("--region", default="", help="left,top,width,height in base px (default: whole slide)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--name", default="pipeline_throughput", help="result file name in benchmarks/results")
    args = parser.parse_args()
    slide = Slide(args.slide)
    region = parse_region(args.region, slide.width, slide.height) if args.region else None
    rows = [row for label in args.models for row in rows_for(label, slide, region, args.device, args.batch_size)]
    extent = f"the region {args.region}" if args.region else "the whole slide"
    body = (f"`{Path(args.slide).name}`, {extent}, batches of {args.batch_size}, precision as the CLIs' default "
            f"(auto), each model at its CLI's default tile size and tissue threshold (0.1); in one process with "
            f"0-2 reader and 0-2 post-processing processes. Feed: the pipeline with the forward pass replaced by the "
            f"network's own recorded outputs.\n\n{table(rows)}\n")
    print(write_result(args.name, "Slide pipeline: feed rate against the network", body, {"rows": rows}))


if __name__ == "__main__":
    main()
