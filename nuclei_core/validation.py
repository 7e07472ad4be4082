"""The checks every CLI's parameters pass before anything is read or written, from the CLI's XML spec.

Every number finite and inside its ``<constraints>``; every output with its spec's extension; no output
that is one of the inputs (the same path, or the same file through a link), so a slip on the command line
or in a form never overwrites a slide or an annotation.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

from .cli_spec import cli_parameters
from .errors import InputError

NUMBER_TYPES = {"integer", "float", "double", "integer-vector", "float-vector", "double-vector", "region"}
PATH_TYPES = {"file", "image", "directory"}
# What an output may end with besides the spec's extension (the spec names one, so that the DSA's form
# proposes a clean file name): large_image reads .json annotations; QuPath reads gzipped GeoJSON.
ALTERNATIVE_SUFFIXES = {".anot": (".json",), ".geojson": (".geojson.gz",)}


def _numbers(value: Any) -> list[float]:
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]


def check_number(name: str, value: Any, constraints: Any) -> None:
    """Finite, and inside ``constraints``' minimum and maximum where the spec gives them."""
    numbers = _numbers(value)
    if not all(math.isfinite(v) for v in numbers):
        shown = ",".join(f"{v:g}" for v in numbers)
        raise InputError(f"{name}={shown} is not a finite number")
    if constraints is None or len(numbers) != 1:
        return
    low = float(constraints.minimum) if constraints.minimum is not None else -math.inf
    high = float(constraints.maximum) if constraints.maximum is not None else math.inf
    if not low <= numbers[0] <= high:
        raise InputError(f"{name}={value} is outside the allowed range {low:g} to {high:g}")


def accepted_suffixes(extensions: list[str] | None) -> tuple[str, ...]:
    """The spec's extensions and their alternatives, lower case."""
    spec = [e.lower() for e in extensions or []]
    return tuple(spec + [alternative for e in spec for alternative in ALTERNATIVE_SUFFIXES.get(e, ())])


def check_output_suffix(name: str, path: str, extensions: list[str] | None) -> None:
    """``path`` ends with an extension the spec allows for output ``name``."""
    accepted = accepted_suffixes(extensions)
    if accepted and not str(path).lower().endswith(accepted):
        raise InputError(f"{name} {Path(path).name} must end with {' or '.join(accepted)}")


def check_not_an_input(name: str, output: str, inputs: dict[str, str | Path]) -> None:
    """``output`` is none of the ``inputs`` that exist, by path or through a (hard or symbolic) link."""
    if not os.path.exists(output):
        return
    for input_name, path in inputs.items():
        if os.path.exists(path) and os.path.samefile(output, path):
            raise InputError(f"{name} {output} is the {input_name} file: an output never replaces an input")


def check_parameters(cli_name: str, args: argparse.Namespace) -> None:
    """Every parameter of ``cli_name``'s spec as ``args`` holds it: numbers, output names, inputs kept safe."""
    parameters = cli_parameters(cli_name)
    values = {p.name: getattr(args, p.name, None) for p in parameters}
    for parameter in parameters:
        if parameter.typ in NUMBER_TYPES and values[parameter.name] is not None:
            check_number(parameter.name, values[parameter.name], parameter.constraints)
    paths = [p for p in parameters if p.typ in PATH_TYPES and values[p.name]]
    inputs = {p.name: values[p.name] for p in paths if p.channel != "output"}
    for parameter in paths:
        if parameter.channel == "output":
            check_output_suffix(parameter.name, values[parameter.name], parameter.fileExtensions)
            check_not_an_input(parameter.name, values[parameter.name], inputs)
