"""What every training script shares on its command line: output, checkpoint and run length."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

from .. import interrupts
from ..allocator import keep_freed_memory
from ..errors import InputError, NucleiError, OneLineArgumentParser
from ..models.base import PRECISIONS
from ..validation import check_not_an_input, check_output_suffix
from .trainer import TrainSettings

# Weights a training script reads, which its --output and --checkpoint must never replace.
INPUT_WEIGHTS = ("init_weights", "stage1_weights")
# Numbers that may be infinite (no time limit); every other number must be finite.
MAY_BE_INFINITE = ("max_minutes",)


def at_least(convert: Callable[[str], Any], low: float, strictly: bool = False) -> Callable[[str], Any]:
    """An argparse type: ``convert`` of the text, refused (a one-line parser error) below ``low`` (or at it,
    ``strictly``)."""

    def parse(text: str) -> Any:
        value = convert(text)
        if value < low or (strictly and value == low):
            raise argparse.ArgumentTypeError(f"must be {'more than' if strictly else 'at least'} {low:g}, not {text}")
        return value

    parse.__name__ = convert.__name__  # argparse names it in "invalid int value: ..."
    return parse


def check_training_arguments(args: argparse.Namespace) -> None:
    """Every number finite (but for a time limit), ``--output`` a .pt file, and neither it nor ``--checkpoint``
    one of the weights the run reads."""
    for name, value in vars(args).items():
        numbers = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, float)]
        if not all(math.isfinite(v) or (name in MAY_BE_INFINITE and v > 0) for v in numbers):
            shown = ",".join(f"{v:g}" for v in numbers) if isinstance(value, list) else f"{value}"
            raise InputError(f"--{name.replace('_', '-')}={shown} is not a finite number")
    check_output_suffix("--output", args.output, [".pt"])
    inputs = {f"--{name.replace('_', '-')}": getattr(args, name) for name in INPUT_WEIGHTS if getattr(args, name, None)}
    for name in ("output", "checkpoint"):
        if getattr(args, name, None):
            check_not_an_input(f"--{name}", getattr(args, name), inputs)


class TrainingArgumentParser(OneLineArgumentParser):
    """A training script's parser: one-line errors, and the arguments checked (``check_training_arguments``)."""

    def parse_args(self, args: list[str] | None = None, namespace: argparse.Namespace | None = None) -> Any:
        parsed = super().parse_args(args, namespace)
        try:
            check_training_arguments(parsed)
        except InputError as exc:
            self.error(str(exc))
        return parsed


def training_parser(doc: str) -> TrainingArgumentParser:
    """The parser of the training script whose module docstring is ``doc``."""
    return TrainingArgumentParser(description=doc.split("\n")[0])


def add_run_arguments(parser: argparse.ArgumentParser, steps: int, batch_size: int, learning_rate: float) -> None:
    """Output, checkpoint and run-length arguments, with these defaults."""
    parser.add_argument("--output", required=True, help="weights file to write (.pt, fp16)")
    parser.add_argument("--checkpoint", help="resumable checkpoint (default: <output>.ckpt)")
    parser.add_argument("--steps", type=at_least(int, 0), default=steps, help="training steps (0: none)")
    parser.add_argument("--batch-size", type=at_least(int, 1), default=batch_size)
    parser.add_argument("--learning-rate", type=at_least(float, 0, strictly=True), default=learning_rate)
    parser.add_argument("--eval-every", type=at_least(int, 1), default=250, help="validate every this many steps")
    parser.add_argument("--max-minutes", type=at_least(float, 0, strictly=True), default=float("inf"),
                        help="stop (resumably) after this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loader-workers", type=at_least(int, 0), default=0,
                        help="draw the training batches in this many worker processes (0: in the training process); "
                             "with workers each step's batch has its own seeded generator, so the batches differ from "
                             "a run without workers but not between worker counts (a resumed run must keep the mode)")
    parser.add_argument("--fit-minutes", type=at_least(float, 0), default=0.0,
                        help="time the first steps, then cut --steps to the multiple of --eval-every whose training "
                             "steps fit in this many minutes (validation not counted); the run log records the "
                             "steps chosen, which --steps repeats (but for the learning rate of the timed steps, "
                             "set by the planned --steps); 0: run --steps")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="what the training steps compute in: bfloat16 autocasts the forward pass and the loss "
                             "(weights, gradients and optimizer stay float32; about 2x faster on GPUs from NVIDIA "
                             "Ampere on and CPUs with AVX-512 BF16); validation stays float32")
    parser.add_argument("--freeze-batch-norm", action="store_true",
                        help="batch norm keeps the running statistics and affine weights it starts with (for "
                             "fine-tuning from --init-weights on batches too small for good statistics, e.g. on a CPU)")


def add_tuning_arguments(parser: argparse.ArgumentParser, tuned: str) -> None:
    """``--retune`` and ``--tune-later`` for a script whose post-processing (``tuned``) is tuned on validation."""
    parser.add_argument("--retune", action="store_true",
                        help=f"only re-tune the {tuned} of the --output weights on the validation images (no training)")
    parser.add_argument("--tune-later", action="store_true",
                        help=f"save the best weights with the {tuned} they were validated with, untuned (e.g. a "
                             "GPU run whose tuning is CPU work); tune them afterwards with --retune")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: auto (a CUDA GPU when present), cpu or cuda."""
    parser.add_argument("--device", default="auto", help="auto (CUDA GPU when present), cpu or cuda")


def settings_from(args: argparse.Namespace, checkpoint: Path | None = None, **extra: Any) -> TrainSettings:
    """The training loop's settings from the run arguments (``extra`` sets the optimizer and the like)."""
    return TrainSettings(steps=args.steps, learning_rate=args.learning_rate, eval_every=args.eval_every,
                         seed=args.seed, max_minutes=args.max_minutes, loader_workers=args.loader_workers,
                         fit_minutes=args.fit_minutes, precision=args.precision,
                         freeze_batch_norm=args.freeze_batch_norm,
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
    """Load the run's best weights into ``model``, tune its post-processing with ``tune(model)`` (unless
    ``--tune-later``), save it to ``--output`` (versioned by ``--version`` where the script has it, else by the
    file name) and write the run log."""
    model.network.load_state_dict(state["best_state"])
    tuned = {} if getattr(args, "tune_later", False) else tune(model)
    model.save(args.output, version=getattr(args, "version", None) or Path(args.output).stem)
    fitted = {"fitted_steps": state["fitted_steps"]} if "fitted_steps" in state else {}
    write_run_log(args, state, {"step": state["step"], "best_step_score": state["best_score"], **fitted, **tuned,
                                "parameters": sum(p.numel() for p in model.network.parameters())})


def retune_saved(output: str, model: Any, tune: Callable[[Any], dict]) -> None:
    """Re-tune the post-processing of the ``model`` loaded from ``output``, save it there and log the result."""
    tuned = tune(model)
    model.save(output, version=model.weights_version)
    update_run_summary(output, tuned)
    print(json.dumps(tuned))


def load_start_weights(model: Any, start: Any, path: str, architecture_keys: tuple[str, ...]) -> None:
    """Load the network of ``start`` (the model read from ``path``, ``--init-weights``) into ``model``; an
    InputError naming the first of ``architecture_keys`` whose setting differs between the two."""
    for key in architecture_keys:
        if start.config.get(key) != model.config.get(key):
            raise InputError(f"--init-weights {path} has {key} {start.config.get(key)}, this run asks for "
                             f"{model.config.get(key)}")
    model.network.load_state_dict(start.network.state_dict())


def run_training_script(main: Callable[[], None]) -> None:
    """Run a training script's ``main`` from the command line: bad input (a NucleiError) ends it with one line on
    stderr and the error's exit code instead of a traceback, and so does Ctrl-C (exit code 130; the run resumes
    from its last checkpoint). Freed memory is kept for reuse, as in the CLIs."""
    keep_freed_memory()
    interrupts.ctrl_c_as_exception()
    try:
        main()
    except NucleiError as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        print(f"{Path(sys.argv[0]).name}: interrupted; the same command resumes from the last checkpoint",
              file=sys.stderr)
        raise SystemExit(interrupts.EXIT_CODE) from None
