"""Run any SlideModel over a whole slide: tile plan, batching, the pipeline of this process or Dask, progress."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from shapely.geometry import MultiPolygon

from ..allocator import TRIM_THRESHOLD_BYTES, USER_SETTINGS
from ..errors import InputError
from ..models.base import SlideModel, TilePreparation, resolve_device
from ..nuclei import Nuclei
from .geometry import check_on_slide, clamped_to_slide, well_formed
from .pipeline import infer_tiles, pipeline_workers, run_pipeline
from .progress import Progress
from .reading import colour_sample, prepare_tile_batch
from .region import contains_points
from .slide import Slide
from .tiling import Tile, TilePlan, plan_tiles


@dataclass(frozen=True)
class ModelSpec:
    """A picklable recipe for a model, so Dask workers can build (and cache) their own copy."""

    model_class: type[SlideModel]
    weights: str
    device: str = "cpu"
    overrides: tuple[tuple[str, Any], ...] = ()

    def build(self) -> SlideModel:
        """The model, loaded once per process."""
        return _build_model(self)


@lru_cache(maxsize=4)
def _build_model(spec: ModelSpec) -> SlideModel:
    return spec.model_class.from_weights(spec.weights, spec.device, **dict(spec.overrides))


@dataclass
class EngineSettings:
    """How to run: tile size (analysis px), tissue threshold, batch size, and where (this process's pipeline, with
    its reader and post-processing processes, -1 choosing them for the device; or Dask)."""

    tile_size: int = 1024
    min_fgnd_frac: float = 0.25
    batch_size: int = 4
    scheduler: str = ""
    num_workers: int = 1
    show_progress: bool = True
    inference: str = "auto"  # with Dask: "workers" run the model, or "here" on tiles they prepare; auto: here on a GPU
    readers: int = -1
    postprocessors: int = -1


@dataclass
class SlideResult:
    """Nuclei in base pixels plus what a benchmark or an output needs to know about the run."""

    nuclei: Nuclei
    plan: TilePlan
    seconds: float
    model_record: dict[str, Any] = field(default_factory=dict)


def analyse_tile_batch(slide_path: str, input_mag: float | None, spec: ModelSpec, preparation: TilePreparation,
                       tiles: list[Tile], scale: float) -> Nuclei:
    """Read, prepare and analyse one batch of tiles in this process (the unit of work of Dask workers)."""
    prepared = prepare_tile_batch(slide_path, input_mag, preparation, tiles, scale)
    return infer_tiles(spec.build(), prepared, tiles, scale)


def batches_of_one_shape(tiles: list[Tile], size: int) -> list[list[Tile]]:
    """The tiles in batches of at most ``size``, each batch of tiles whose read boxes have one shape: a tile
    clipped by the slide's edge is never padded to a full neighbour's size (work for nothing), and each tile
    gives the same nuclei whatever the batch size."""
    by_shape: dict[tuple[int, int], list[Tile]] = {}
    for tile in tiles:
        x0, y0, x1, y1 = tile.read
        by_shape.setdefault((x1 - x0, y1 - y0), []).append(tile)
    return [group[i:i + size] for group in by_shape.values() for i in range(0, len(group), size)]


LOCAL_SCHEDULERS = {"multithreading": "threads", "threads": "threads",
                    "multiprocessing": "processes", "processes": "processes"}
INFERENCE_PLACES = ("auto", "workers", "here")


def check_scheduler(scheduler: str) -> None:
    """Fail early on a scheduler value that is neither empty, a local kind, nor an address."""
    if scheduler and scheduler not in LOCAL_SCHEDULERS and "://" not in scheduler:
        raise InputError(f"unknown scheduler {scheduler!r}: leave empty, or use multithreading, "
                         "multiprocessing or a scheduler address such as tcp://127.0.0.1:8786")


def kept_memory_environment() -> dict[str, int]:
    """Dask settings that start local worker processes with this suite's malloc settings (allocator.py) in place of
    Dask's own small trim threshold, unless the user set glibc's variables."""
    if any(name in os.environ for name in USER_SETTINGS):
        return {}
    return {"distributed.nanny.pre-spawn-environ.MALLOC_MMAP_MAX_": 0,
            "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": TRIM_THRESHOLD_BYTES}


def _dask_client(scheduler: str, num_workers: int):
    import dask
    from dask.distributed import Client, LocalCluster

    check_scheduler(scheduler)
    if LOCAL_SCHEDULERS.get(scheduler) == "threads":
        return Client(LocalCluster(n_workers=1, threads_per_worker=max(1, num_workers), processes=False,
                                   dashboard_address=None))
    if LOCAL_SCHEDULERS.get(scheduler) == "processes":
        with dask.config.set(kept_memory_environment()):
            return Client(LocalCluster(n_workers=max(1, num_workers), threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None))
    try:
        return Client(scheduler, timeout=20)
    except OSError as exc:
        raise InputError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None


def infers_here(settings: EngineSettings, spec: ModelSpec) -> bool:
    """Whether this process runs the model on tiles the Dask workers read and prepare: asked for, or (auto)
    when the model is on a GPU, so one process owns it while the workers keep it fed."""
    if settings.inference not in INFERENCE_PLACES:
        raise ValueError(f"unknown inference place {settings.inference!r}: use one of {INFERENCE_PLACES}")
    if settings.inference == "auto":
        return resolve_device(spec.device).type == "cuda"
    return settings.inference == "here"


def _run_on_dask(slide: Slide, spec: ModelSpec, model: SlideModel, preparation: TilePreparation,
                 batches: list[list[Tile]], scale: float, settings: EngineSettings,
                 progress: Progress) -> Iterator[Nuclei]:
    """Batches as Dask tasks, at most two per worker in flight (bounded memory). Workers read and prepare
    their own tiles; the model runs on the workers, or here on what they prepared (``infers_here``).
    A worker lost mid-run has its tasks rerun elsewhere by Dask; a check at the end proves each batch was merged
    exactly once."""
    from dask.distributed import as_completed

    here = infers_here(settings, spec)
    with _dask_client(settings.scheduler, settings.num_workers) as client:
        workers = max(1, sum(client.nthreads().values()))
        queue, batch_of = iter(enumerate(batches)), {}

        def submit(index: int, batch: list[Tile]):
            if here:
                future = client.submit(prepare_tile_batch, slide.path, slide.input_mag, preparation, batch,
                                       scale, pure=False)
            else:
                future = client.submit(analyse_tile_batch, slide.path, slide.input_mag, spec, preparation, batch,
                                       scale, pure=False)
            batch_of[future.key] = index
            return future

        merged: list[int] = []
        running = as_completed([submit(*item) for item in itertools.islice(queue, 2 * workers)])
        for future in running:
            index = batch_of.pop(future.key)
            result = future.result()
            next_item = next(queue, None)
            if next_item is not None:
                running.add(submit(*next_item))
            merged.append(index)
            yield infer_tiles(model, result, batches[index], scale) if here else result
            progress.update(len(batches[index]))
        if sorted(merged) != list(range(len(batches))):
            raise RuntimeError(f"Dask returned {len(merged)} of {len(batches)} tile batches")


def given_nuclei(model: SlideModel) -> tuple[Nuclei, str] | None:
    """The nuclei a user gave the model and their file, or None: a model that classifies given nuclei declares them
    with ``given_nuclei()``, so that none is dropped (their tiles are analysed whatever the tissue mask says, and
    the sliver rule of ``geometry`` is not applied to them)."""
    declared = getattr(model, "given_nuclei", None)
    return declared() if declared is not None else None


def analyse_slide(slide: Slide, spec: ModelSpec, region: MultiPolygon | None, settings: EngineSettings) -> SlideResult:
    """All nuclei of ``slide`` (inside ``region``), each reported once, in base pixel coordinates."""
    started = time.time()
    model = spec.build()
    given = given_nuclei(model)
    if given is not None:
        check_on_slide(*given, slide.width, slide.height)
    plan = plan_tiles(slide, model.analysis_magnification, settings.tile_size, model.halo, region,
                      settings.min_fgnd_frac, None if given is None else given[0].centroids)
    batches = batches_of_one_shape(plan.tiles, settings.batch_size)
    progress = Progress(len(plan.tiles), model.name, f"{len(plan.tiles)} tiles", settings.show_progress)
    try:
        preparation = model.tile_preparation(lambda: colour_sample(slide, plan.tiles, plan.scale))
        if settings.scheduler:
            parts = list(_run_on_dask(slide, spec, model, preparation, batches, plan.scale, settings, progress))
        else:
            workers = pipeline_workers(resolve_device(spec.device).type, settings.readers, settings.postprocessors)
            parts = list(run_pipeline(slide, model, preparation, batches, plan.scale, workers, progress))
    finally:
        progress.close()
    nuclei = Nuclei.concatenate(parts, model.class_names)
    nuclei = nuclei.select(contains_points(region, nuclei.centroids))
    nuclei = (clamped_to_slide(nuclei, slide.width, slide.height) if given is not None
              else well_formed(nuclei, slide.width, slide.height, plan.scale))
    return SlideResult(nuclei, plan, time.time() - started, model.parameters_record())
