"""Fine-tune a shipped model on a pathologist's annotated regions, scored before and after on a held-out part:
UD-Net from points, R2U-Net / U-Net from outlines.

    from nuclei_core.review.fine_tune import AnnotatedSlide, FineTuneSettings, fine_tune
    result = fine_tune([AnnotatedSlide("slide.svs", "mine.anot")], "UD-Net multi-organ", FineTuneSettings(steps=300))
    result.model.save("my_udnet.pt", version="my-lab-1"); print(model_card(result, "my_udnet.pt"))

The regions (rectangles, or outlines labelled ROI) are where every nucleus is marked; they are cut into cells
and a seeded share of the cells is held out: it chooses the checkpoint and the detection threshold and is scored
with the base and the fine-tuned weights through the whole-slide engine, as EvaluateNuclei would score it.
"""

from __future__ import annotations

import datetime
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from shapely.geometry import MultiPolygon, box

from .. import __version__
from ..engine.analysis import EngineSettings, analyse_slide
from ..engine.geometry import check_on_slide
from ..engine.slide import Slide
from ..errors import InputError
from ..metrics.detection import DetectionScores
from ..models.base import TrainedModel, resolve_precision
from ..models.nucleus_classifier import DEFAULT_WEIGHTS as CLASSIFIER_WEIGHTS
from ..models.segmenter import DEFAULT_WEIGHTS as SEGMENTER_WEIGHTS
from ..models.udnet import WEIGHTS_BY_TRAINING_SET
from ..nuclei import Nuclei
from ..outputs.readers import read_nuclei_and_regions
from ..training.fine_tuning_kinds import ClassifierFineTuning, DetectorFineTuning, FineTuning, SegmenterFineTuning
from ..training.slide_cells import Cell, hold_out, region_cells
from ..training.trainer import TrainSettings, train
from .agreement import Agreement, carries_classes
from .evaluate import evaluate_nuclei

TUNED = ("threshold", "min_distance", "foreground_threshold", "marker_threshold", "min_area", "split_distance")
BASE_MODELS: dict[str, tuple[FineTuning, Path]] = {
    "UD-Net multi-organ": (DetectorFineTuning(), WEIGHTS_BY_TRAINING_SET["Multi-organ"]),
    "UD-Net colorectal": (DetectorFineTuning(), WEIGHTS_BY_TRAINING_SET["Colorectal"]),
    "R2U-Net": (SegmenterFineTuning(), SEGMENTER_WEIGHTS["R2U-Net"]),
    "U-Net": (SegmenterFineTuning(), SEGMENTER_WEIGHTS["U-Net"]),
    "DCRN": (ClassifierFineTuning(), CLASSIFIER_WEIGHTS["DCRN"]),
    "DenseNet": (ClassifierFineTuning(), CLASSIFIER_WEIGHTS["DenseNet"]),
}


@dataclass(frozen=True)
class AnnotatedSlide:
    """A slide and the pathologist's annotation of it; ``source`` records where they came from (Girder ids)."""

    slide: str
    truth: str
    input_mag: float | None = None
    source: str = ""


@dataclass(frozen=True)
class FineTuneSettings:
    """How long and how gently to fine-tune, and how the regions are cut and held out."""

    steps: int = 300
    learning_rate: float = 1e-4
    batch_size: int = 8
    patch: int = 128  # training crops, px at the model's magnification (also the smallest cell side)
    cell: int = 256  # regions are cut into cells of about this side
    held_out: float = 0.2
    match_radius_um: float = 3.0
    stain_jitter: float = 0.05
    seed: int = 0
    device: str = "cpu"
    precision: str = "float32"  # what training and the held-out runs compute in: models.base.PRECISIONS or "auto"
    eval_every: int = 50


@dataclass
class SlideCells:
    """One annotated slide, opened, with its training and held-out cells."""

    annotated: AnnotatedSlide
    slide: Slide
    truth: Nuclei
    training: list[Cell] = field(default_factory=list)
    held_out: list[Cell] = field(default_factory=list)

    def held_out_region(self) -> MultiPolygon | None:
        boxes = [box(x, y, x + w, y + h) for x, y, w, h in (c.bounds for c in self.held_out)]
        return MultiPolygon(boxes) if boxes else None


@dataclass
class FineTuneResult:
    """The fine-tuned model, its data, and the held-out scores of the base and the fine-tuned weights."""

    model: TrainedModel
    kind: FineTuning
    base: str
    base_weights: Path
    slides: list[SlideCells]
    before: list[Agreement | None]  # per slide (None: no held-out cell on it)
    after: list[Agreement | None]
    settings: FineTuneSettings
    minutes: float
    history: list[dict]
    best_step: int  # 0: no fine-tuned checkpoint beat the base weights on the held-out cells

    @staticmethod
    def total(agreements: list[Agreement | None]) -> DetectionScores:
        return sum((a.detection for a in agreements if a is not None), DetectionScores())


def _cells(annotated: list[AnnotatedSlide], base: str, magnification: float, settings: FineTuneSettings,
           region_label: str) -> list[SlideCells]:
    opened = []
    for item in annotated:
        slide = Slide(item.slide, item.input_mag)
        truth, regions = read_nuclei_and_regions(item.truth, region_label)
        check_on_slide(truth, item.truth, slide.width, slide.height)
        learns_from = BASE_MODELS[base][0].learns_from
        if learns_from == "outlines" and truth.contours is None:
            raise InputError(f"{base} learns from nucleus outlines, but {Path(item.truth).name} "
                             "holds points: outline the nuclei, or fine-tune UD-Net")
        if learns_from == "classes" and not carries_classes(truth):
            raise InputError(f"{base} learns from classified nuclei, but the nuclei of {Path(item.truth).name} have "
                             "no class: put them in groups (DSA) or classes (QuPath) named by cell type")
        if regions is None:
            raise InputError(f"{Path(item.truth).name} has no regions: draw rectangles (or outlines labelled "
                             f"{region_label}) around the areas where every nucleus is marked")
        opened.append(SlideCells(item, slide, truth, region_cells(slide, truth, regions, magnification, settings.cell,
                                                           settings.patch)))
    every = [(i, c) for i, s in enumerate(opened) for c in s.training]
    training, held_out = hold_out([c for _, c in every], settings.held_out, settings.seed)
    chosen = {id(c) for c in held_out}
    for index, slide in enumerate(opened):
        slide.held_out = [c for i, c in every if i == index and id(c) in chosen]
        slide.training = [c for i, c in every if i == index and id(c) not in chosen]
    if not sum(len(c.points) for c in training):
        raise InputError("the training cells hold no annotated nucleus")
    return opened


def _held_out_scores(slides: list[SlideCells], kind: FineTuning, weights: Path, settings: FineTuneSettings,
                     folder: Path) -> list[Agreement | None]:
    """Each slide's held-out cells analysed by the engine with ``weights`` and scored against the truth."""
    scores = []
    for cells in slides:
        region = cells.held_out_region()
        if region is None:
            scores.append(None)
            continue
        spec = kind.engine_spec(weights, settings.device, cells.truth, folder)
        spec = replace(spec, overrides=(*spec.overrides, ("precision", settings.precision)))
        result = analyse_slide(cells.slide, spec, region, EngineSettings(min_fgnd_frac=0.0, show_progress=False))
        predicted = result.nuclei
        if not set(predicted.class_names) & set(cells.truth.class_names):  # a base with other classes than yours
            predicted = Nuclei(predicted.centroids, predicted.scores, predicted.contours)
        scores.append(evaluate_nuclei(predicted, cells.truth, region, cells.slide.microns_per_pixel,
                                      settings.match_radius_um))
    return scores


def fine_tune(annotated: list[AnnotatedSlide], base: str, settings: FineTuneSettings,
              base_weights: str | Path | None = None, region_label: str = "ROI",
              log: Callable[[str], None] = print) -> FineTuneResult:
    """Fine-tune ``base`` (a name of :data:`BASE_MODELS`; ``base_weights`` replace its shipped weights) on the
    annotated slides."""
    if base not in BASE_MODELS:
        raise InputError(f"unknown base model {base!r}: choose from {', '.join(BASE_MODELS)}")
    kind, shipped = BASE_MODELS[base]
    weights = Path(base_weights or shipped)
    model = kind.model_class.from_weights(weights, settings.device)
    settings = replace(settings, precision=resolve_precision(settings.precision, model.device,
                                                             model.bfloat16_is_faster))
    slides = _cells(annotated, base, model.analysis_magnification, settings, region_label)
    torch.manual_seed(settings.seed)  # a new last layer, when the classes are new, starts the same every time
    model = kind.prepare(model, tuple(sorted({n for s in slides for c in s.training + s.held_out
                                             for n in c.class_labels})))
    training = [c for s in slides for c in s.training]
    held_out = [c for s in slides for c in s.held_out]
    log(f"{len(training)} training cells ({sum(len(c.points) for c in training)} nuclei), {len(held_out)} held out "
        f"({sum(len(c.points) for c in held_out)} nuclei)")
    started = time.time()
    radius = settings.match_radius_um * model.analysis_magnification / 10  # um -> px at the model's magnification
    with tempfile.TemporaryDirectory(prefix="nuclei-finetune-") as folder:
        run = TrainSettings(steps=settings.steps, learning_rate=settings.learning_rate,
                            eval_every=min(settings.eval_every, settings.steps), seed=settings.seed,
                            checkpoint=Path(folder) / "run.ckpt", final_learning_rate=settings.learning_rate / 10,
                            device=str(model.device), validate_at_start=True, precision=settings.precision)
        state = train(model.network, kind.sampler(model, training, settings.patch, settings.batch_size,
                                                  settings.stain_jitter),
                      kind.loss, kind.validator(model, held_out, radius), run, log=log)
        model.network.load_state_dict(state["best_state"])
        model.config.update(state["best_extra"])
        tuned = Path(folder) / f"fine-tuned-{time.time_ns()}.pt"  # a new name: the engine caches models by path
        model.save(tuned, version="fine-tuned")
        minutes = (time.time() - started) / 60
        before = _held_out_scores(slides, kind, weights, settings, Path(folder))
        after = _held_out_scores(slides, kind, tuned, settings, Path(folder))
    return FineTuneResult(model, kind, base, weights, slides, before, after, settings, minutes, state["history"],
                          best_step=next(r["step"] for r in state["history"] if r["score"] == state["best_score"]))


def _scores_row(label: str, scores: DetectionScores) -> str:
    return f"| {label} | {scores.tp} | {scores.fp} | {scores.fn} | {scores.precision:.3f} | {scores.recall:.3f} | " \
           f"{scores.f1:.3f} |"


def _first_slide_table(result: FineTuneResult, title: str, columns: tuple[str, ...],
                       values: Callable[[Agreement], list[float] | None]) -> str:
    """A base / fine-tuned table of the first slide's held-out scores, or nothing when they do not apply."""
    rows = [f"| {label} | " + " | ".join(f"{v:.3f}" for v in values(a)) + " |"
            for label, a in (("base", result.before[0]), ("**fine-tuned**", result.after[0]))
            if a is not None and values(a)]
    if not rows:
        return ""
    return f"\n{title}:\n\n| weights | {' | '.join(columns)} |\n|{'---|' * (len(columns) + 1)}\n" + "\n".join(rows) + "\n"


def model_card(result: FineTuneResult, weights_name: str) -> str:
    """The model card of fine-tuned weights: base model, data, settings, held-out scores before and after."""
    s = result.settings
    rows = "\n".join(
        f"| {Path(c.annotated.slide).name} | {Path(c.annotated.truth).name} | {c.annotated.source or '-'} | "
        f"{len(c.training)} / {len(c.held_out)} | {sum(len(x.points) for x in c.training)} / "
        f"{sum(len(x.points) for x in c.held_out)} |" for c in result.slides)
    before, after = result.total(result.before), result.total(result.after)
    outlines = _first_slide_table(result, "Outlines on the first slide's held-out cells", ("Dice", "AJI", "PQ"),
                                  lambda a: a.outlines and [a.outlines[k] for k in ("dice", "aji", "pq")])
    classes = _first_slide_table(result, "Classes of your nuclei on the first slide's held-out cells",
                                 ("accuracy", "weighted F1", "macro F1"),
                                 lambda a: a.classes and [a.classes.as_dict()[k] for k in
                                                          ("accuracy", "weighted_f1", "macro_f1")])
    kept = (f"the checkpoint of step {result.best_step}, the best on the held-out cells" if result.best_step else
            "**the base weights**: no fine-tuned checkpoint beat them on the held-out cells (only the post-processing "
            "settings were re-tuned on your cells); more annotated regions may help")
    return f"""# Model card: fine-tuned {result.model.name} (`{weights_name}`)

| | |
|---|---|
| Base model | {result.base} (`{result.base_weights.name}`; its own model card describes its training data and licence) |
| Fine-tuned | {datetime.date.today().isoformat()}, nuclei_core {__version__}, {result.model.device}, {result.minutes:.1f} min |
| Settings | {s.steps} steps, Adam, learning rate {s.learning_rate:g} with cosine decay, batch {s.batch_size} of {s.patch}x{s.patch} crops at {result.model.analysis_magnification:g}x, dihedral + colour + HED stain jitter {s.stain_jitter:g}, seed {s.seed} |
| Kept | {kept} |
| Held out | a seeded {s.held_out:.0%} of the region cells (about {s.cell} px at {result.model.analysis_magnification:g}x): checkpoint and threshold chosen on it, then scored below |
| Post-processing | {", ".join(f"{k} {result.model.config[k]}" for k in TUNED if k in result.model.config)} (tuned on the held-out cells) |
| Licence | as the base weights (research use only); the annotations belong to the lab that drew them |

## Slides and annotations

| slide | annotation | source | cells (train / held out) | nuclei (train / held out) |
|---|---|---|---|---|
{rows}

## Held-out cells, one-to-one matching within {s.match_radius_um:g} um (whole-slide engine, as EvaluateNuclei scores)

| weights | TP | FP | FN | precision | recall | F1 |
|---|---|---|---|---|---|---|
{_scores_row("base", before)}
{_scores_row("**fine-tuned**", after)}
{outlines}{classes}
The held-out cells also chose the checkpoint and the threshold, so these figures favour the fine-tuned weights
a little; score them on other annotated regions with EvaluateNuclei (`--method_options "--model_weights
{weights_name}"`).

## Use

{result.kind.usage(weights_name)}.
"""
