"""HoVer-Net's networks on the validation images, where the CLI's choices were made: SE + CA, plain and both
averaged (``--network "both averaged"``), each in its shipped inference window.

Validation: the held-out CoNSeP and MoNuSeg training tiles (never the test splits). Score: the training's
selection score, mean of CoNSeP PQ, CoNSeP multi-class PQ and MoNuSeg PQ (``validation_scores`` in
``train_hovernet``), at the thresholds shipped with the weights and at the best of the tuning grid
(``choose_setting``: scores within the tie margin count as equal, the nucleus count closest to the truth wins).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from benchmarks.slide_speed import accuracy_and_speed_parser  # noqa: E402
from nuclei_core.data.instance_sets import load_instance_set, load_typed_consep  # noqa: E402
from nuclei_core.models.hovernet import AVERAGED, shipped_network  # noqa: E402
from nuclei_core.training.train_hovernet import SCORE_TIE, choose_setting, threshold_candidates  # noqa: E402

NETWORKS = ("SE + CA", "plain", AVERAGED)
THRESHOLDS = ("foreground_threshold", "edge_threshold")
FIGURES = {"validation_score": "score", "pq": "CoNSeP PQ", "mpq": "CoNSeP mPQ", "untyped_pq": "MoNuSeg PQ",
           "count_ratio": "found / true"}  # a grid candidate's figures, as the table names them


def main() -> None:
    args = accuracy_and_speed_parser(__doc__, slide=False).parse_args()
    items = load_typed_consep("val", args.data) + load_instance_set("monuseg", "val", args.data)
    rows = []
    for network in NETWORKS:
        model_class, weights = shipped_network(network)
        model = model_class.from_weights(weights, args.device)
        shipped = tuple(model.config[key] for key in THRESHOLDS)
        outputs = [model.predict_outputs(item.image[None])[0] for item in items]
        candidates = threshold_candidates(model, outputs, items)
        at_shipped = next(c for c in candidates if tuple(c[key] for key in THRESHOLDS) == shipped)
        best = choose_setting(candidates)
        rows.append({"network": network, "window": model.config.get("inference_window"),
                     "thresholds shipped": " / ".join(map(str, shipped)),
                     "score at shipped": round(at_shipped["validation_score"], 4),
                     "thresholds chosen": " / ".join(str(best[key]) for key in THRESHOLDS),
                     **{f"chosen: {label}": round(best[key], 4) for key, label in FIGURES.items()}})
    body = (f"## Validation images ({len(items)}: CoNSeP and MoNuSeg held-out training tiles)\n\n{table(rows)}\n\n"
            f"Scores within {SCORE_TIE} of each other count as a tie. \"both averaged\" runs SE + CA in its window "
            "and plain in its own, averages their maps and finds the nuclei at SE + CA's thresholds.")
    print(write_result("hovernet_validation", "HoVer-Net networks on the validation images", body, {"rows": rows}))
    print(body)


if __name__ == "__main__":
    main()
