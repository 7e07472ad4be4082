"""The training loop every model reuses: seeded sampling, Adam or SGD, periodic validation, resumable checkpoints."""

from __future__ import annotations

import copy
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..models.base import check_precision, computing_in
from .batch_prefetch import PrefetchedBatches

FIT_PROBE_STEPS = 20  # steps timed (after 3 warm-up steps) before fit_minutes sets the run's length
BatchSampler = Callable[[np.random.Generator], tuple[torch.Tensor, torch.Tensor]]
Validator = Callable[[nn.Module], tuple[float, dict]]


@dataclass
class TrainSettings:
    """How long and how to train; ``checkpoint`` is rewritten at every validation."""

    steps: int
    learning_rate: float
    eval_every: int
    seed: int
    checkpoint: Path
    max_minutes: float = float("inf")
    final_learning_rate: float = 1e-5
    optimizer: str = "adam"  # or "sgd" (with momentum)
    momentum: float = 0.9
    weight_decay: float = 0.0
    device: str = "cpu"  # where the network lives; batches are moved there
    schedule: str = "cosine"  # learning rate: cosine decay to final_learning_rate, or "step": a tenth after 2/3
    validate_at_start: bool = False  # score the starting weights too (fine-tuning: keep them if nothing beats them)
    loss_sees_network: bool = False  # loss_fn(network, inputs, targets): networks that compute their own losses
    loader_workers: int = 0  # 0: batches drawn in the training process from one generator; else by this many
    # worker processes, each step's batch from its own generator (batch_prefetch), the same for any worker count
    fit_minutes: float = 0.0  # > 0: after FIT_PROBE_STEPS steps, cut ``steps`` to what fits in this many minutes
    precision: str = "float32"  # or "bfloat16": forward pass and loss autocast (weights, gradients, Adam in float32)
    freeze_batch_norm: bool = False  # batch norm keeps its running statistics and affine weights (fine-tuning on
    # batches too small for good statistics)


def make_optimizer(network: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum, with the settings' learning rate and weight decay."""
    if settings.optimizer == "sgd":
        return torch.optim.SGD(network.parameters(), lr=settings.learning_rate, momentum=settings.momentum,
                               weight_decay=settings.weight_decay)
    if settings.optimizer == "adam":
        return torch.optim.Adam(network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    raise ValueError(f"unknown optimizer {settings.optimizer!r}")


def learning_rate(settings: TrainSettings, progress: float) -> float:
    """The learning rate at ``progress`` (0 to 1) of the run."""
    if settings.schedule == "step":
        return settings.learning_rate * (0.1 if progress >= 2 / 3 else 1.0)
    if settings.schedule == "cosine":
        return settings.final_learning_rate + 0.5 * (settings.learning_rate - settings.final_learning_rate) * (
            1 + np.cos(np.pi * progress))
    raise ValueError(f"unknown schedule {settings.schedule!r}")


def _save_atomically(state: dict, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def train(network: nn.Module, sample_batch: BatchSampler, loss_fn: Callable, validate: Validator,
          settings: TrainSettings, log: Callable[[str], None] = print) -> dict:
    """Train ``network`` in place and return the checkpoint dict (best weights by validation score).

    Resumes from ``settings.checkpoint`` when it exists; the learning rate follows a cosine decay.
    """
    check_precision(settings.precision, torch.device(settings.device))
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    optimizer = make_optimizer(network, settings)
    state = {"step": 0, "best_score": -np.inf, "best_state": None, "best_extra": {}, "history": []}
    if settings.checkpoint.is_file():
        state = torch.load(settings.checkpoint, map_location="cpu", weights_only=False)
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        log(f"resumed at step {state['step']} (best score {state['best_score']:.4f})")
    settings.steps = state.get("fitted_steps", settings.steps)
    started, running, step_seconds = time.time(), [], []
    if settings.validate_at_start and state["step"] == 0:
        _validate(network, validate, state, {"step": 0, "loss": float("nan"), "lr": 0.0, "minutes": 0.0}, log)
    with ExitStack() as stack:
        if settings.loader_workers:
            next_batch = stack.enter_context(PrefetchedBatches(sample_batch, settings.seed, settings.loader_workers,
                                                               state["step"])).next
        else:
            next_batch = lambda: sample_batch(rng)  # noqa: E731
        while state["step"] < settings.steps and (time.time() - started) < settings.max_minutes * 60:
            lr = learning_rate(settings, state["step"] / settings.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            network.train()
            if settings.freeze_batch_norm:
                freeze_batch_norm(network)
            step_started = time.time()
            inputs, targets = (t.to(settings.device) for t in next_batch())
            with computing_in(settings.precision, torch.device(settings.device)):
                loss = (loss_fn(network, inputs, targets) if settings.loss_sees_network
                        else loss_fn(network(inputs), targets))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running.append(loss.item())
            state["step"] += 1
            step_seconds.append(time.time() - step_started)
            if settings.fit_minutes and "fitted_steps" not in state and len(step_seconds) == FIT_PROBE_STEPS + 3:
                settings.steps = state["fitted_steps"] = fitted_steps(settings, state["step"], step_seconds[3:])
                log(f"{np.mean(step_seconds[3:]):.3f} s per step: {settings.steps} steps fit in "
                    f"{settings.fit_minutes:g} minutes")
            if state["step"] % settings.eval_every == 0 or state["step"] == settings.steps:
                _validate(network, validate, state, {"step": state["step"], "loss": float(np.mean(running)),
                                                     "lr": lr, "minutes": (time.time() - started) / 60}, log)
                running = []
                state.update(network=network.state_dict(), optimizer=optimizer.state_dict(),
                             rng=rng.bit_generator.state)
                _save_atomically(state, settings.checkpoint)
    network.eval()  # a run stopped by max_minutes ends mid-training: batch norm must use its running statistics
    return state


def freeze_batch_norm(network: nn.Module) -> None:
    """Put every batch norm layer of a training ``network`` in eval mode (its running statistics used, not
    updated) and stop its affine weights' gradients."""
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)


def fitted_steps(settings: TrainSettings, step: int, probe_seconds: list[float]) -> int:
    """The run length (a multiple of ``eval_every``, at most ``settings.steps``, at least the next validation) whose
    remaining steps fit in ``settings.fit_minutes`` at the probed seconds per step."""
    remaining = settings.fit_minutes * 60 - float(np.sum(probe_seconds))
    fitting = step + int(remaining / max(float(np.mean(probe_seconds)), 1e-6))
    rounded = fitting // settings.eval_every * settings.eval_every
    return max(min(rounded, settings.steps), -(-step // settings.eval_every) * settings.eval_every)


def _validate(network: nn.Module, validate: Validator, state: dict, record: dict, log: Callable[[str], None]) -> None:
    """Score the network, log and record it, and keep its weights when they are the best so far."""
    network.eval()
    with torch.inference_mode():
        score, extra = validate(network)
    record = {**record, "score": score, **extra}
    state["history"].append(record)
    if score > state["best_score"]:
        state.update(best_score=score, best_state=copy.deepcopy(network.state_dict()), best_extra=extra)
    log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
