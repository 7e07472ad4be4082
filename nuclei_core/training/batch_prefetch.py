"""Training batches drawn in worker processes ahead of the step that uses them.

On a GPU a step can take less time than one CPU core needs to crop, augment and build the targets of its batch;
workers draw the next batches meanwhile. Batch ``k`` is always ``sample_batch(step_generator(seed, k))``, so a
run gives the same batches whatever the number of workers, and a resumed run carries on where it stopped.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Callable

import numpy as np
import torch

Batch = tuple[torch.Tensor, torch.Tensor]
_worker_sampler: Callable[[np.random.Generator], Batch] | None = None


def step_generator(seed: int, step: int) -> np.random.Generator:
    """The random generator of one training step's batch."""
    return np.random.default_rng([seed, step])


def _start_worker(sample_batch: Callable[[np.random.Generator], Batch]) -> None:
    global _worker_sampler
    _worker_sampler = sample_batch
    torch.set_num_threads(1)


def _draw(seed: int, step: int) -> Batch:
    assert _worker_sampler is not None, "worker started without a sampler"
    return _worker_sampler(step_generator(seed, step))


class PrefetchedBatches:
    """The batches of steps ``first_step``, ``first_step + 1``, ..., drawn by ``workers`` forked processes that
    stay ``2 * workers`` steps ahead. Use as a context manager (the workers end with it)."""

    def __init__(self, sample_batch: Callable[[np.random.Generator], Batch], seed: int, workers: int,
                 first_step: int) -> None:
        if workers < 1:
            raise ValueError("PrefetchedBatches needs at least one worker")
        # fork: the sampler (a closure over the loaded images) reaches the workers without pickling
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                         initializer=_start_worker, initargs=(sample_batch,))
        self._seed, self._next_step = seed, first_step
        self._pending: deque[Future] = deque()
        for _ in range(2 * workers):
            self._submit()

    def _submit(self) -> None:
        self._pending.append(self._pool.submit(_draw, self._seed, self._next_step))
        self._next_step += 1

    def next(self) -> Batch:
        """The next step's batch."""
        batch = self._pending.popleft().result()
        self._submit()
        return batch

    def __enter__(self) -> "PrefetchedBatches":
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
