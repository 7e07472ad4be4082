"""What every training script shares on its command line: output, checkpoint and run length."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from .trainer import TrainSettings


def add_run_arguments(parser: argparse.ArgumentParser, steps: int, batch_size: int, learning_rate: float) -> None:
    """Output, checkpoint and run-length arguments, with these defaults."""
    parser.add_argument("--output", required=True, help="weights file to write (.pt, fp16)")
    parser.add_argument("--checkpoint", help="resumable checkpoint (default: <output>.ckpt)")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--learning-rate", type=float, default=learning_rate)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--max-minutes", type=float, default=float("inf"), help="stop (resumably) after this")
    parser.add_argument("--seed", type=int, default=0)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: auto (a CUDA GPU when present), cpu or cuda."""
    parser.add_argument("--device", default="auto", help="auto (CUDA GPU when present), cpu or cuda")


def settings_from(args: argparse.Namespace, checkpoint: Path | None = None, **extra: Any) -> TrainSettings:
    """The training loop's settings from the run arguments (``extra`` sets the optimizer and the like)."""
    return TrainSettings(steps=args.steps, learning_rate=args.learning_rate, eval_every=args.eval_every,
                         seed=args.seed, max_minutes=args.max_minutes,
                         checkpoint=checkpoint or Path(args.checkpoint or args.output + ".ckpt"), **extra)


def write_run_log(args: argparse.Namespace, state: dict[str, Any], summary: dict[str, Any]) -> None:
    """``<output>.log.json``: the run's ``summary``, its validation history and its arguments; the summary is
    printed too."""
    Path(args.output).with_suffix(".log.json").write_text(json.dumps(
        {"summary": summary, "history": state["history"], "arguments": vars(args)}, indent=1, default=str))
    print(json.dumps(summary))


def update_run_summary(output: str | Path, values: dict[str, Any]) -> None:
    """Add ``values`` to the summary of ``<output>.log.json`` when there is one (after re-tuning)."""
    path = Path(output).with_suffix(".log.json")
    if path.is_file():
        log = json.loads(path.read_text())
        log["summary"].update(values)
        path.write_text(json.dumps(log, indent=1, default=str))


def save_best(args: argparse.Namespace, model: Any, state: dict[str, Any], tune: Callable[[Any], dict]) -> None:
    """Load the run's best weights into ``model``, tune its post-processing with ``tune(model)``, save it to
    ``--output`` (versioned by ``--version`` where the script has it, else by the file name) and write the run
    log."""
    model.network.load_state_dict(state["best_state"])
    tuned = tune(model)
    model.save(args.output, version=getattr(args, "version", None) or Path(args.output).stem)
    write_run_log(args, state, {"step": state["step"], "best_step_score": state["best_score"], **tuned,
                                "parameters": sum(p.numel() for p in model.network.parameters())})


def retune_saved(output: str, model: Any, tune: Callable[[Any], dict]) -> None:
    """Re-tune the post-processing of the ``model`` loaded from ``output``, save it there and log the result."""
    tuned = tune(model)
    model.save(output, version=model.weights_version)
    update_run_summary(output, tuned)
    print(json.dumps(tuned))
