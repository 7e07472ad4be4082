"""The CLI framework every plugin uses: parse the XML spec, validate, run the engine, write outputs."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from shapely.geometry import MultiPolygon

from . import __version__, interrupts
from .allocator import keep_freed_memory
from .cli_spec import cli_parameters, cli_parser
from .engine.analysis import EngineSettings, ModelSpec, analyse_slide, check_scheduler
from .engine.region import parse_region
from .engine.slide import Slide
from .errors import InputError, NucleiError
from .models.base import SlideModel, resolve_device
from .nuclei import Nuclei
from .outputs.atomic import Writer, check_writable, write_all_or_nothing
from .outputs.dsa import annotation_documents, write_annotation
from .outputs.geojson import feature_collection, write_geojson
from .outputs.density import check_cell_size, density_documents
from .outputs.overlay import render_overlay, write_png
from .outputs.summary import slide_summary, write_nucleus_table, write_summary
from .shape_measurements import contour_measurements
from .validation import check_parameters

OUTPUT_PARAMETERS = ("outputNucleiAnnotationFile", "outputGeoJSONFile", "outputOverlayImage", "outputSummaryFile",
                     "outputNucleiTable")
LARGE_GEOJSON_OUTLINES = 200_000  # above this, say that a compact GeoJSON exists
DSA_INGEST_LIMIT = 1024 ** 3  # large_image's default max_annotation_input_file_length
HIDDEN_FROM_RECORD = {"girderToken", "girderApiUrl", "inputImageFile", *OUTPUT_PARAMETERS}


def tuned_unless_set(value: float, name: str, low: float, high: float) -> float | None:
    """A post-processing setting from the CLI: None (keep the value tuned with the weights) for -1,
    else ``value`` when it lies in (``low``, ``high``]; anything else is an :class:`InputError`."""
    if value == -1:
        return None
    if not low < value <= high:
        raise InputError(f"{name} must be in ({low:g}, {high:g}] or -1, got {value:g}")
    return value


ModelOverrides = Callable[[argparse.Namespace], dict[str, Any]]
ModelChoice = Callable[[argparse.Namespace], tuple[type[SlideModel], Path]]


def changed_parameters(cli_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The recorded parameters whose values differ from the spec's defaults (what a user chose for this run)."""
    positional = sorted((p for p in cli_parameters(cli_name) if p.index is not None), key=lambda p: p.index)
    defaults = vars(cli_parser(cli_name).parse_args([str(getattr(args, p.name)) for p in positional]))
    return {k: v for k, v in vars(args).items() if k not in HIDDEN_FROM_RECORD and defaults.get(k) != v}


def write_nuclei_outputs(args: argparse.Namespace, slide: Slide, region: MultiPolygon | None, nuclei: Nuclei,
                         names: tuple[str, str], attributes: dict[str, Any],
                         extra: tuple[tuple[str, Writer], ...] = (), extra_documents: tuple[dict, ...] = ()) -> None:
    """The annotation (with ``extra_documents`` after the nuclei), and the GeoJSON and overlay when ``args`` asks
    for them, plus ``extra`` outputs: all written or none. ``names``: the annotation's title and the GeoJSON
    objects' name."""
    title, name = names
    documents = [*annotation_documents(nuclei, title, attributes, args.annotation_max_elements), *extra_documents]
    outputs = [(args.outputNucleiAnnotationFile, partial(write_annotation, documents=documents)), *extra]
    if args.outputGeoJSONFile:
        if nuclei.contours is not None and args.geojson_detail == "full" and len(nuclei) > LARGE_GEOJSON_OUTLINES:
            print(f"note: the GeoJSON holds {len(nuclei)} full outlines; --geojson_detail simplified (or points) "
                  "writes a smaller file that QuPath opens faster", file=sys.stderr)
        collection = feature_collection(nuclei, name, args.geojson_detail, slide.microns_per_pixel)
        outputs.append((args.outputGeoJSONFile, partial(write_geojson, collection=collection,
                                                        compress=args.outputGeoJSONFile.endswith(".gz"))))
    if args.outputOverlayImage:
        bounds = region.bounds if region is not None else None
        outputs.append((args.outputOverlayImage, partial(write_png, image=render_overlay(slide, nuclei, bounds))))
    write_all_or_nothing(outputs)
    if os.path.getsize(args.outputNucleiAnnotationFile) > DSA_INGEST_LIMIT:
        print(f"note: {Path(args.outputNucleiAnnotationFile).name} is over 1 GiB, the largest annotation file the DSA "
              "ingests by default (its max_annotation_input_file_length setting)", file=sys.stderr)


def summary_outputs(args: argparse.Namespace, nuclei: Nuclei, summary: dict[str, Any]) -> tuple[tuple[str, Writer], ...]:
    """The slide summary file and the per-nucleus table, where ``args`` asks for them."""
    outputs: list[tuple[str, Writer]] = []
    if args.outputSummaryFile:
        outputs.append((args.outputSummaryFile, partial(write_summary, summary=summary,
                                                        as_csv=args.outputSummaryFile.lower().endswith(".csv"))))
    if args.outputNucleiTable:
        outputs.append((args.outputNucleiTable, partial(write_nucleus_table, nuclei=nuclei,
                                                        compress=args.outputNucleiTable.lower().endswith(".gz"))))
    return tuple(outputs)


def run(cli_name: str, choose_model: ModelChoice, overrides: ModelOverrides, args: argparse.Namespace) -> None:
    """Analyse the slide named in ``args`` and write every requested output (all or nothing)."""
    for name in OUTPUT_PARAMETERS:
        if getattr(args, name, None):
            check_writable(getattr(args, name))
    check_scheduler(args.scheduler.strip())
    check_cell_size(args.density_grid_um)
    device = str(resolve_device(args.device))
    slide = Slide(args.inputImageFile, args.input_mag or None)
    region = parse_region(args.analysis_roi, slide.width, slide.height)
    model_class, default_weights = choose_model(args)
    weights = args.model_weights or str(default_weights)
    model_settings = {**overrides(args), "precision": args.precision}
    spec = ModelSpec(model_class, weights, device, tuple(sorted(model_settings.items())))
    settings = EngineSettings(tile_size=args.analysis_tile_size, min_fgnd_frac=args.min_fgnd_frac,
                              batch_size=args.batch_size, scheduler=args.scheduler.strip(),
                              num_workers=args.num_workers)
    result = analyse_slide(slide, spec, region, settings)
    if not result.plan.tiles:
        print(f"{cli_name}: no tissue found in {Path(slide.path).name} (or its region); "
              "writing an empty result", file=sys.stderr)
    created = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    attributes = {
        **result.model_record,
        "cli": cli_name,
        "nuclei_core_version": __version__,
        "slide": Path(slide.path).name,
        "created": created.isoformat(),
        "parameters": {k: v for k, v in vars(args).items() if k not in HIDDEN_FROM_RECORD},
        "changed_parameters": changed_parameters(cli_name, args),
    }
    nuclei = result.nuclei
    if nuclei.contours is not None:
        nuclei.measurements.update(contour_measurements(nuclei.contours, slide.microns_per_pixel))
    summary = slide_summary(nuclei, result.plan, region, slide.microns_per_pixel)
    attributes["summary"] = summary
    model_name = result.model_record["model"]
    title = f"{model_name} nuclei, {created:%Y-%m-%d %H:%M:%S} UTC"  # runs on one slide told apart by name
    densities = density_documents(nuclei, result.plan, slide.microns_per_pixel, args.density_grid_um,
                                  args.density_colormap, title, attributes)
    write_nuclei_outputs(args, slide, region, nuclei, (title, model_name), attributes,
                         summary_outputs(args, nuclei, summary), tuple(densities))
    density = f", {summary['per_mm2_tissue']:g} per mm² of tissue" if summary["per_mm2_tissue"] is not None else ""
    print(f"{cli_name}: {len(nuclei)} nuclei{density} in {len(result.plan.tiles)} of {result.plan.tiles_total} "
          f"tiles, {result.seconds:.1f} s", file=sys.stderr)


def run_guarded(cli_name: str, action: Callable[[argparse.Namespace], None], argv: list[str] | None = None) -> int:
    """Parse ``argv`` with the CLI's XML spec and run ``action`` on it; problems become one line and exit code 2."""
    args = cli_parser(cli_name).parse_args(argv)
    keep_freed_memory()
    try:
        check_parameters(cli_name, args)
        action(args)
    except NucleiError as exc:
        print(f"{cli_name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{cli_name}: interrupted; no output written", file=sys.stderr)
        return interrupts.EXIT_CODE
    except Exception as exc:  # a bug, not bad input: still one line, the traceback only on request
        if os.environ.get("NUCLEI_DEBUG"):
            traceback.print_exc()
        print(f"{cli_name}: unexpected error: {type(exc).__name__}: {exc} (set NUCLEI_DEBUG=1 for details)",
              file=sys.stderr)
        return 1
    return 0


def main(cli_name: str, choose_model: ModelChoice, overrides: ModelOverrides, argv: list[str] | None = None) -> int:
    """Run a model CLI on ``argv`` (see :func:`run_guarded`); ``choose_model`` gives the model class and its
    shipped weights for the parsed arguments."""
    return run_guarded(cli_name, partial(run, cli_name, choose_model, overrides), argv)
