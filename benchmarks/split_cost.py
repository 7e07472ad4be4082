"""What the second cut at the centres (``split_distance``) costs in the segmenters' post-processing.

The shipped MM-GAT fluorescence weights (the ones tuned to cut) on DSB2018 ``stage1_test``'s fluorescence images:
the network's maps once per image, then ``split_instances`` without the cut and with the tuned distance, each the
median of ``--repeats`` runs on one thread; milliseconds per image and per megapixel, and the nuclei found.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from benchmarks.slide_speed import accuracy_and_speed_parser  # noqa: E402
from nuclei_core.data.instance_sets import load_instance_set  # noqa: E402
from nuclei_core.models.segmenter import GRAPH_ATTENTION, NucleusSegmenter, shipped_weights  # noqa: E402
from nuclei_core.postprocess.instances import split_instances  # noqa: E402


def post_processing_ms(output: np.ndarray, config: dict, split_distance: int, repeats: int) -> tuple[float, int]:
    """Median milliseconds of ``split_instances`` on one image's maps, and the nuclei it finds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        labels = split_instances(output[0], output[1], config["foreground_threshold"], config["marker_threshold"],
                                 config["min_area"], split_distance)
        times.append(1000 * (time.perf_counter() - started))
    return float(np.median(times)), int(labels.max())


def main() -> None:
    parser = accuracy_and_speed_parser(__doc__, slide=False)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = NucleusSegmenter.from_weights(shipped_weights(GRAPH_ATTENTION, "fluorescence"), args.device)
    items = [i for i in load_instance_set("dsb2018", "test", args.data) if i.modality == "fluorescence"]
    outputs = [model.predict_outputs(item.image[None])[0] for item in items]
    megapixels = sum(item.image.shape[0] * item.image.shape[1] for item in items) / 1e6
    rows = []
    for distance in (0, int(model.config["split_distance"])):
        runs = [post_processing_ms(output, model.config, distance, args.repeats) for output in outputs]
        total = sum(ms for ms, _ in runs)
        rows.append({"split distance px": distance, "images": len(items), "ms per image": total / len(items),
                     "ms per megapixel": total / megapixels, "nuclei": sum(n for _, n in runs)})
    body = (f"## DSB2018 stage1_test fluorescence images ({megapixels:.2f} MP), weights "
            f"`{model.weights_version}`, one CPU thread\n\n{table(rows)}\n\n"
            "Post-processing only (core-seeded watershed, the cut, the minimum-area filter); the network's maps are "
            "computed once beforehand and not timed.\n")
    print(write_result("split_cost", "Segmentation post-processing: the cost of the second cut", body,
                       {"rows": rows, "megapixels": megapixels}))
    print(body)


if __name__ == "__main__":
    main()
