"""The slide pipeline of one process: tiles read and prepared ahead (by a thread, or by reader processes each with its
own large_image source), the network's forward pass here, and each tile's post-processing in a pool of processes
while the next batch runs. Work in flight is bounded (a few batches), so memory does not grow with the slide; nuclei
come out in tile order, each kept by the one tile whose core holds it."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np

from ..models.base import SlideModel, TilePreparation
from ..nuclei import Nuclei
from .merge import owned_nuclei
from .progress import Progress
from .reading import prepare_tile_batch, prepare_tiles
from .slide import Slide
from .tiling import Tile

Item = TypeVar("Item")
Result = TypeVar("Result")
# Workers are forked from a server process that imported the pipeline (numpy, OpenCV, scikit-image, torch) and never
# ran anything: they start in a moment and hold no thread pool of this process (OpenCV's and OpenMP's do not
# survive a fork; a forked copy of this process hangs in OpenCV).
FORK_SERVER = multiprocessing.get_context("forkserver")
FORK_SERVER.set_forkserver_preload([__name__])


@dataclass(frozen=True)
class Workers:
    """Processes working beside this one: ``readers`` read and prepare tiles (0: a thread of this process),
    ``postprocessors`` turn network outputs into nuclei (0: this process, after each batch)."""

    readers: int = 0
    postprocessors: int = 0


def pipeline_workers(device_type: str, readers: int = -1, postprocessors: int = -1,
                     cpus: int | None = None) -> Workers:
    """The workers of a run; -1 chooses. On a GPU the CPU cores feed it: a reader process per four cores (at most
    four) and post-processing on the rest but one (which drives the GPU). On the CPU the network already uses every
    core: reading stays a thread and post-processing is done after each batch."""
    cpus = cpus or os.cpu_count() or 1
    if device_type == "cuda":
        chosen_readers = min(4, max(1, cpus // 4))
        chosen = Workers(chosen_readers, max(1, cpus - chosen_readers - 1))
    else:
        chosen = Workers(0, 0)
    return Workers(chosen.readers if readers < 0 else readers,
                   chosen.postprocessors if postprocessors < 0 else postprocessors)


def _start_worker() -> None:
    """A worker's start: Ctrl-C is the parent's to handle; one thread in each numeric library."""
    import cv2
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes (forked from the fork server)."""
    return ProcessPoolExecutor(workers, mp_context=FORK_SERVER, initializer=_start_worker)


def in_order(executor: Executor, task: Callable[[Item], Result], items: Iterable[Item],
             ahead: int) -> Iterator[Result]:
    """``task(item)`` of each item, computed by ``executor`` at most ``ahead`` items ahead, yielded in order."""
    remaining = iter(items)
    pending: deque[Future] = deque(executor.submit(task, item) for item in itertools.islice(remaining, ahead))
    while pending:
        result = pending.popleft().result()
        for item in itertools.islice(remaining, 1):
            pending.append(executor.submit(task, item))
        yield result


def prepared_batches(slide: Slide, preparation: TilePreparation, batches: list[list[Tile]], scale: float,
                     readers: ProcessPoolExecutor | None = None, ahead: int = 1) -> Iterator[list[np.ndarray]]:
    """The prepared tiles of each batch, in order, read ``ahead`` batches ahead by a pool of reader processes, or
    without one by a thread of this process."""
    if readers is not None:
        task = partial(prepare_tile_batch, slide.path, slide.input_mag, preparation, scale=scale)
        yield from in_order(readers, task, batches, ahead)
        return
    with ThreadPoolExecutor(max_workers=1) as thread:
        yield from in_order(thread, lambda batch: prepare_tiles(slide, preparation, batch, scale), batches, ahead)


def infer_tiles(model: SlideModel, prepared: list[np.ndarray], tiles: list[Tile], scale: float) -> Nuclei:
    """Nuclei of a batch of prepared tiles of one shape, each kept only in its own core, in base pixel
    coordinates (network and post-processing in this process)."""
    results = model.predict_at(np.stack(prepared), [tuple(tile.read[:2]) for tile in tiles], scale)
    return Nuclei.concatenate([owned_nuclei(nuclei, tile, scale) for nuclei, tile in zip(results, tiles)],
                              model.class_names)


def postprocess_tile(postprocessor: Any, output: np.ndarray, pixels: np.ndarray, tile: Tile, scale: float) -> Nuclei:
    """The nuclei one tile owns, from its network output (the task of a post-processing process)."""
    return owned_nuclei(postprocessor.postprocess_tile(output, pixels), tile, scale)


def run_pipeline(slide: Slide, model: SlideModel, preparation: TilePreparation, batches: list[list[Tile]],
                 scale: float, workers: Workers, progress: Progress) -> Iterator[Nuclei]:
    """The nuclei of every batch, in order. With post-processing processes (and a model that can hand its
    post-processing over: ``postprocessor()``), the network runs the next batch while they work; at most two
    batches of outputs wait for them."""
    postprocessor = model.postprocessor() if workers.postprocessors and hasattr(model, "postprocessor") else None
    post_pool = process_pool(workers.postprocessors) if postprocessor is not None else None
    reader_pool = process_pool(workers.readers) if workers.readers else None
    try:
        reading = prepared_batches(slide, preparation, batches, scale, reader_pool, max(1, 2 * workers.readers))
        if post_pool is None:
            for batch, prepared in zip(batches, reading):
                yield infer_tiles(model, prepared, batch, scale)
                progress.update(len(batch))
            return
        waiting: deque[Future] = deque()
        limit = 2 * max(len(batch) for batch in batches) if batches else 0
        for batch, prepared in zip(batches, reading):
            outputs = model.predict_outputs(np.stack(prepared))
            for output, pixels, tile in zip(outputs, prepared, batch):
                waiting.append(post_pool.submit(postprocess_tile, postprocessor, output, pixels, tile, scale))
            while len(waiting) > limit:
                yield waiting.popleft().result()
                progress.update(1)
        while waiting:
            yield waiting.popleft().result()
            progress.update(1)
    finally:
        for pool in (post_pool, reader_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
