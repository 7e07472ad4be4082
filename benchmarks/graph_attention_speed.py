"""MM-GAT speed and memory: the slide CLI, a forward pass per tile side, a training step per batch of patches.

The multi-magnification graph attention network's GraphAttentionSegmentation CLI on the sample slide, one forward
pass per tile side with its peak memory, and one training step per batch of patches.

Slide: the CLI in a fresh process, as the DSA runs it. Memory per tile: peak RSS of one forward pass over one tile
of each side, a fresh process each, above that of the same process that only loads the model. Training step:
forward, backward and an Adam update of a batch of random patches (plain BCE), the shipped network and a wider one
(what a step of a longer run costs on this machine); the median of ``--steps`` steps after one warm-up step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from benchmarks.slide_speed import SAMPLE, cli_speed_section, timed  # noqa: E402
from nuclei_core.models.graph_attention import PyramidGraph  # noqa: E402
from nuclei_core.models.segmenter import DEFAULT_WEIGHTS, GRAPH_ATTENTION, NucleusSegmenter  # noqa: E402

TILE_SIDES = (0, 256, 512, 1024)  # 0: the same process without a forward pass (its base memory)
TRAINING_BATCHES = ((8, 64), (8, 128), (16, 256))  # (patches, side): the shipped run's, 4x and 32x its pixels
WIDER_CHANNELS = 64  # the wider network a longer run would train (--graph-channels)


def graph_tile_memory(model: NucleusSegmenter, device: str) -> list[dict]:
    """Peak RSS of one MM-GAT forward pass over one tile of each side, a fresh process each, above that of the same
    process that only loads the model; the forward pass's time as that process measured it."""
    rows, base = [], 0.0
    with tempfile.TemporaryDirectory() as folder:
        for side in TILE_SIDES:
            seconds_file = Path(folder) / f"{side}.txt"
            code = ("import time; import numpy as np; from nuclei_core.models.segmenter import DEFAULT_WEIGHTS, "
                    "GRAPH_ATTENTION, NucleusSegmenter; "
                    f"m = NucleusSegmenter.from_weights(DEFAULT_WEIGHTS[GRAPH_ATTENTION], {device!r}); "
                    "started = time.perf_counter(); "
                    f"{side} and m.predict_outputs(np.full((1, {side}, {side}, 3), 128, np.uint8)); "
                    f"open({str(seconds_file)!r}, 'w').write(str(time.perf_counter() - started))")
            peak = timed([sys.executable, "-c", code])[1]
            if not side:
                base = peak
                continue
            graph = PyramidGraph(side, side, int(model.config["levels"]))
            rows.append({"tile px": f"{side} x {side}", "nodes": graph.nodes, "edges": int(graph.edges()[0].numel()),
                         "forward s": round(float(seconds_file.read_text()), 1), "peak RSS MiB": round(peak),
                         "above base MiB": round(peak - base),
                         "KiB per pixel": round((peak - base) * 1024 / side ** 2, 2)})
    return rows


def training_step_seconds(network: torch.nn.Module, batch: int, side: int, steps: int, device: str) -> float:
    """Median wall seconds of one training step (forward, BCE, backward, Adam) on random ``batch`` x ``side``²
    patches, after one warm-up step."""
    network.to(device).train()
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, side, side, generator=generator).to(device)
    targets = (torch.rand(batch, 2, side, side, generator=generator) > 0.5).float().to(device)
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(network(images), targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:]))


def training_rows(config: dict, steps: int, device: str, largest: int) -> list[dict]:
    """One row per network width and patch batch (up to ``largest`` pixels a batch): seconds a step and steps an
    hour."""
    rows = []
    for channels in (int(config["channels"]), WIDER_CHANNELS):
        torch.manual_seed(0)
        network = NucleusSegmenter.build_network({**config, "channels": channels})
        for batch, side in TRAINING_BATCHES:
            if batch * side * side > largest:
                continue
            seconds = training_step_seconds(network, batch, side, steps, device)
            rows.append({"channels": channels, "parameters": sum(p.numel() for p in network.parameters()),
                         "batch": f"{batch} x {side}²", "step s": round(seconds, 3),
                         "steps per hour": round(3600 / seconds)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slide", default=str(SAMPLE), help="the slide the CLI is timed on")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per row (after one warm-up)")
    parser.add_argument("--largest-batch", type=int, default=8 * 128 * 128,
                        help="leave out training batches of more pixels than this (the default leaves out "
                             "16 x 256² on a CPU; give 1048576 on a GPU)")
    args = parser.parse_args()
    model = NucleusSegmenter.from_weights(DEFAULT_WEIGHTS[GRAPH_ATTENTION], args.device)
    speed_section, speed, tissue_mp = cli_speed_section(
        args.slide, "GraphAttentionSegmentation", {GRAPH_ATTENTION: []}, args.device, "network",
        "segmentation at 40x (the 20x slide upsampled)")
    memory = graph_tile_memory(model, args.device)
    training = training_rows(model.config, args.steps, args.device, args.largest_batch)
    body = (f"{speed_section}\n## Memory per tile (one tile, batch 1, {args.device}; a fresh process each)\n\n"
            f"{table(memory)}\n\n## Training step ({args.device}, {torch.get_num_threads()} threads; random "
            f"patches, plain BCE, Adam)\n\n{table(training)}\n")
    print(write_result("graph_attention_speed", "MM-GAT speed and memory", body,
                       {"slide": speed, "tissue_mp": tissue_mp, "graph_memory": memory, "training": training,
                        "config": model.config}))
    print(body)


if __name__ == "__main__":
    main()
