"""FineTuneNucleiModel: the command-line side of :mod:`nuclei_core.review.fine_tune` (used by
``plugins/FineTuneNucleiModel.py``)."""

from __future__ import annotations

import argparse
import csv
import datetime
import sys
from functools import partial
from pathlib import Path

from .. import __version__
from ..cli import write_nuclei_outputs
from ..errors import InputError
from ..models.base import resolve_device
from ..nuclei import Nuclei
from ..outputs.atomic import check_writable
from .agreement import MATCH_CLASSES
from .fine_tune import AnnotatedSlide, FineTuneSettings, fine_tune, model_card

CLI_NAME = "FineTuneNucleiModel"


def read_more_slides(path: str) -> list[AnnotatedSlide]:
    """The ``slide,annotation[,input_mag]`` rows of a CSV, relative paths read from the CSV's folder."""
    folder = Path(path).parent
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise InputError(f"cannot read more_slides: {exc}") from None
    if not rows or not {"slide", "annotation"} <= set(rows[0]):
        raise InputError(f"{Path(path).name} needs the columns slide,annotation (and optionally input_mag)")
    return [AnnotatedSlide(str(folder / row["slide"]), str(folder / row["annotation"]),
                           float(row["input_mag"]) if row.get("input_mag") else None) for row in rows]


def _write_text(path: Path, text: str) -> None:
    path.write_text(text)


def run(args: argparse.Namespace) -> None:
    """Fine-tune, then write the weights, their model card and the held-out annotation (all or nothing)."""
    if not args.truthAnnotationFile:
        raise InputError("give your annotation of the slide with --truth_annotation")
    if not args.outputModelWeights:
        raise InputError("give the file for the new weights with --output_weights")
    if list(args.analysis_roi) != [-1.0] * 4:
        raise InputError("fine-tuning learns from the regions of your annotation: leave analysis_roi empty")
    card = args.outputModelCard or str(Path(args.outputModelWeights).with_suffix(".md"))
    for path in (args.outputNucleiAnnotationFile, args.outputGeoJSONFile, args.outputOverlayImage,
                 args.outputModelWeights, card):
        if path:
            check_writable(path)
    slides = [AnnotatedSlide(args.inputImageFile, args.truthAnnotationFile, args.input_mag or None, args.source_ids)]
    if args.more_slides:
        slides += read_more_slides(args.more_slides)
    settings = FineTuneSettings(steps=args.steps, learning_rate=args.learning_rate, held_out=args.held_out_fraction,
                                match_radius_um=args.match_radius, seed=args.seed,
                                device=str(resolve_device(args.device)), precision=args.precision)
    result = fine_tune(slides, args.base_model, settings, args.base_weights or None, args.region_label,
                                log=lambda line: print(f"{CLI_NAME}: {line}", file=sys.stderr, flush=True))
    version = f"{Path(args.outputModelWeights).stem} (fine-tuned {args.base_model}, {datetime.date.today()})"
    first = result.slides[0]
    if result.after[0] is None:
        print(f"{CLI_NAME}: no held-out cell fell on this slide (only on the others): its annotation is empty",
              file=sys.stderr)
    matches = result.after[0].match_table() if result.after[0] is not None else Nuclei.empty(MATCH_CLASSES)
    attributes = {"cli": CLI_NAME, "nuclei_core_version": __version__, "slide": Path(first.slide.path).name,
                  "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "metrics": {"held_out_before": result.total(result.before).as_dict(),
                              "held_out_after": result.total(result.after).as_dict()}}
    extra = ((args.outputModelWeights, lambda path: result.model.save(path, version=version)),
             (card, partial(_write_text, text=model_card(result, Path(args.outputModelWeights).name))))
    write_nuclei_outputs(args, first.slide, first.held_out_region(), matches,
                         ("held-out cells after fine-tuning: true positive, false positive, false negative",
                          CLI_NAME), attributes, extra)
    before, after = result.total(result.before), result.total(result.after)
    print(f"{CLI_NAME}: held-out F1 {before.f1:.3f} -> {after.f1:.3f} (precision {after.precision:.3f}, recall "
          f"{after.recall:.3f}) in {result.minutes:.1f} min; weights {args.outputModelWeights}", file=sys.stderr)
