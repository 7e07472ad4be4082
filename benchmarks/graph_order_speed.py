"""Dense Cascade-GCN network speed by Chebyshev order: the exact whole-crop evaluation of one stage.

Random weights (the speed does not depend on them), one CPU thread unless --threads says otherwise; layer-2 node
types grow as (4K + 3)², which is what the dense form pays for a higher order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.patch_detectors import _seconds  # noqa: E402
from benchmarks.report import table, write_result  # noqa: E402
from nuclei_core.models.patch_gcn import PATCH, PatchGCN, types_of  # noqa: E402


def order_rows(side: int, orders: list[int], hidden: int, repeats: int = 3) -> list[dict]:
    """Seconds of the dense logits of a side x side crop for each order (the best of ``repeats``)."""
    image = torch.rand(1, 3, side + PATCH - 1, side + PATCH - 1)
    rows = []
    for order in orders:
        network = PatchGCN(hidden=hidden, order=order).eval()
        types = types_of(order)
        with torch.inference_mode():
            seconds = min(_seconds(lambda: network.dense(image)) for _ in range(repeats))
        rows.append({"order": order, "layer-1 types": len(types.stencils1), "layer-2 types": len(types.layer2),
                     "pixels": side * side, "dense s": round(seconds, 2), "dense px/s": round(side * side / seconds)})
    base = rows[0]["dense s"]
    for row in rows:
        row["x order 1"] = round(row["dense s"] / base, 1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=128, help="crop side (one dense chunk)")
    parser.add_argument("--orders", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--hidden", type=int, default=64, help="dense units, as the shipped Cascade-GCN")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = order_rows(args.side, args.orders, args.hidden)
    body = (f"## One stage, {args.side} x {args.side} pixels, {args.threads} thread(s)\n\n{table(rows)}\n\n"
            "Validation F1 of stage 2 at each order: see the Cascade-GCN model card.\n")
    print(write_result("graph_order_speed", "Cascade-GCN dense speed by Chebyshev order", body, {"rows": rows}))
    print(body)


if __name__ == "__main__":
    main()
