"""EvaluateNuclei: a method's nuclei scored against a pathologist's annotation inside its regions.

Used by ``plugins/EvaluateNuclei.py``; :func:`evaluate_nuclei` is the same scoring for Python callers.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from functools import partial
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import MultiPolygon, Polygon

from .. import __version__
from ..cli import write_nuclei_outputs
from ..engine.analysis import check_scheduler
from ..engine.geometry import check_on_slide
from ..engine.region import parse_region
from ..engine.slide import Slide
from ..errors import InputError
from ..nuclei import Nuclei
from ..outputs.atomic import check_writable
from ..outputs.overlay import write_png
from ..outputs.readers import read_nuclei, read_nuclei_and_regions
from ..outputs.report import render_report, write_metrics_csv, write_metrics_json
from .agreement import Agreement, agree, inside, parse_class_map
from .method_runs import parse_method, run_method

CLI_NAME = "EvaluateNuclei"
OUTPUTS = ("outputNucleiAnnotationFile", "outputGeoJSONFile", "outputOverlayImage", "outputMetricsFile",
           "outputMetricsTable", "outputReportImage")


def scored_region(truth_regions: MultiPolygon | None, analysis_region: MultiPolygon | None,
                  width: int, height: int) -> MultiPolygon | None:
    """Where to score: the truth's regions, within the analysis region, within the slide (None = everywhere)."""
    parts = [r for r in (truth_regions, analysis_region) if r is not None]
    if not parts:
        return None
    region = shapely.intersection_all([*parts, shapely.box(0, 0, width, height)])
    polygons = [g for g in getattr(region, "geoms", [region]) if isinstance(g, Polygon) and g.area > 0]
    if not polygons:
        raise InputError("the regions of the truth annotation lie outside the analysis region or the slide")
    return MultiPolygon(polygons)


def evaluate_nuclei(predicted: Nuclei, truth: Nuclei, region: MultiPolygon | None, microns_per_pixel: float,
                    match_radius_um: float = 3.0, class_map: dict[str, str] | None = None) -> Agreement:
    """Nuclei of both sides whose centre lies in ``region`` (everywhere when None), matched within
    ``match_radius_um`` micrometres and scored."""
    truth = inside(truth, region)
    if not len(truth):
        raise InputError("no nucleus of the truth annotation lies inside the scored regions")
    return agree(inside(predicted, region), truth, match_radius_um / microns_per_pixel, class_map)


def _metrics(args: argparse.Namespace, slide: Slide, region: MultiPolygon | None, source: str,
             agreement: Agreement) -> dict[str, Any]:
    um2_per_px = slide.microns_per_pixel ** 2
    return {
        "slide": Path(slide.path).name,
        "truth": Path(args.truthAnnotationFile).name,
        "predictions": source,
        "region_label": args.region_label,
        "regions": 0 if region is None else len(region.geoms),
        "scored_area_um2": round((slide.width * slide.height if region is None else region.area) * um2_per_px, 1),
        "microns_per_pixel": slide.microns_per_pixel,
        "match_radius_um": args.match_radius,
        "match_radius_px": args.match_radius / slide.microns_per_pixel,
        **agreement.as_dict(),
    }


def run(args: argparse.Namespace) -> None:
    """Score the method's nuclei against the truth annotation and write every requested output (all or nothing)."""
    if not args.truthAnnotationFile:
        raise InputError("give your annotation of the slide with --truth_annotation")
    for name in OUTPUTS:
        if getattr(args, name, None):
            check_writable(getattr(args, name))
    check_scheduler(args.scheduler.strip())
    class_map = parse_class_map(args.class_map)
    slide = Slide(args.inputImageFile, args.input_mag or None)
    truth, truth_regions = read_nuclei_and_regions(args.truthAnnotationFile, args.region_label)
    if not len(truth):
        raise InputError(f"the truth annotation {Path(args.truthAnnotationFile).name} holds no nuclei")
    check_on_slide(truth, args.truthAnnotationFile, slide.width, slide.height)
    region = scored_region(truth_regions, parse_region(args.analysis_roi, slide.width, slide.height),
                           slide.width, slide.height)
    inside_truth = inside(truth, region)
    if not len(inside_truth):
        raise InputError(f"no nucleus of {Path(args.truthAnnotationFile).name} lies inside its regions")
    if args.inputNucleiAnnotationFile:
        source, predicted = Path(args.inputNucleiAnnotationFile).name, read_nuclei(args.inputNucleiAnnotationFile)
        check_on_slide(predicted, args.inputNucleiAnnotationFile, slide.width, slide.height)
    else:
        method = parse_method(args.method, args.method_options)
        source, predicted = method.label, run_method(method, args.inputImageFile, region, args)
    agreement = evaluate_nuclei(predicted, inside_truth, region, slide.microns_per_pixel, args.match_radius,
                                class_map)
    metrics = _metrics(args, slide, region, source, agreement)
    attributes = {"cli": CLI_NAME, "nuclei_core_version": __version__, "slide": metrics["slide"],
                  "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "metrics": metrics}
    extra = [(path, partial(writer, metrics=metrics)) for path, writer in (
        (args.outputMetricsFile, write_metrics_json), (args.outputMetricsTable, write_metrics_csv)) if path]
    if args.outputReportImage:
        extra.append((args.outputReportImage, partial(write_png, image=render_report(metrics))))
    write_nuclei_outputs(args, slide, region, agreement.match_table(),
                         (f"{source} vs {metrics['truth']}: true positive, false positive, false negative",
                          CLI_NAME), attributes, tuple(extra))
    d = agreement.detection
    print(f"{CLI_NAME}: {source}: precision {d.precision:.3f}, recall {d.recall:.3f}, F1 {d.f1:.3f} "
          f"(TP {d.tp}, FP {d.fp}, FN {d.fn})", file=sys.stderr)
