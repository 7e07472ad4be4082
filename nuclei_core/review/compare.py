"""CompareNucleiMethods: several methods of the suite on one region, how much they agree, and their consensus.

Used by ``plugins/CompareNucleiMethods.py``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..cli import write_nuclei_outputs
from ..engine.analysis import check_scheduler
from ..engine.region import parse_region
from ..engine.slide import Slide
from ..errors import InputError
from ..nuclei import Nuclei
from ..outputs.atomic import check_writable
from ..outputs.report import write_metrics_json
from .agreement import inside
from .consensus import AGREEMENT, consensus, pairwise_f1
from .method_runs import parse_method_list, run_method

CLI_NAME = "CompareNucleiMethods"
CONSENSUS = "consensus"
OUTPUTS = ("outputNucleiAnnotationFile", "outputGeoJSONFile", "outputOverlayImage", "outputMetricsFile",
           "outputAgreementTable")


def comparison_table(found: dict[str, Nuclei], agreed: Nuclei) -> Nuclei:
    """One class per method (its nuclei as points) and the consensus, which alone carries the agreement count."""
    names = (*found, CONSENSUS)
    parts = [Nuclei(n.centroids, n.scores, classes=np.full(len(n), i), class_names=names,
                    measurements={AGREEMENT: np.full(len(n), np.nan)}) for i, n in enumerate(found.values())]
    parts.append(Nuclei(agreed.centroids, agreed.scores, classes=np.full(len(agreed), len(found)), class_names=names,
                        measurements=agreed.measurements))
    return Nuclei.concatenate(parts, names)


def write_agreement_table(path: Path, pairwise: dict[str, dict[str, float]]) -> None:
    """The pairwise F1 matrix as CSV: a header of method names, one row per method."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", *pairwise])
        writer.writerows([a, *(f"{f1:.4f}" for f1 in row.values())] for a, row in pairwise.items())


def run(args: argparse.Namespace) -> None:
    """Run every chosen method on the region, compare them, and write every requested output (all or nothing)."""
    methods = parse_method_list(args.methods)
    if len(methods) < 2:
        raise InputError("compare at least two methods")
    if args.min_agreement > len(methods):
        raise InputError(f"min_agreement={args.min_agreement} but only {len(methods)} methods are compared")
    for name in OUTPUTS:
        if getattr(args, name, None):
            check_writable(getattr(args, name))
    check_scheduler(args.scheduler.strip())
    slide = Slide(args.inputImageFile, args.input_mag or None)
    region = parse_region(args.analysis_roi, slide.width, slide.height)
    found = {m.label: inside(run_method(m, args.inputImageFile, region, args), region) for m in methods}
    radius = args.match_radius / slide.microns_per_pixel
    centroids = {label: nuclei.centroids for label, nuclei in found.items()}
    pairwise = pairwise_f1(centroids, radius)
    agreed = consensus(list(centroids.values()), radius, args.min_agreement)
    metrics: dict[str, Any] = {
        "slide": Path(slide.path).name, "methods": list(found), "nuclei": {k: len(v) for k, v in found.items()},
        "match_radius_um": args.match_radius, "match_radius_px": radius, "min_agreement": args.min_agreement,
        "consensus_nuclei": len(agreed), "pairwise_f1": pairwise,
    }
    attributes = {"cli": CLI_NAME, "nuclei_core_version": __version__, "slide": metrics["slide"],
                  "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "metrics": metrics}
    extra = [(path, partial(writer, **keyword)) for path, writer, keyword in (
        (args.outputMetricsFile, write_metrics_json, {"metrics": metrics}),
        (args.outputAgreementTable, write_agreement_table, {"pairwise": pairwise})) if path]
    write_nuclei_outputs(args, slide, region, comparison_table(found, agreed),
                         (f"{len(found)} methods and their consensus (at least {args.min_agreement})", CLI_NAME),
                         attributes, tuple(extra))
    counts = ", ".join(f"{k} {len(v)}" for k, v in found.items())
    print(f"{CLI_NAME}: {counts}; consensus of at least {args.min_agreement}: {len(agreed)} nuclei", file=sys.stderr)
