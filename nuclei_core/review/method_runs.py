"""Running the suite's own method CLIs from another CLI (EvaluateNuclei, CompareNucleiMethods), in this process,
on the same slide and region, and reading their nuclei back."""

from __future__ import annotations

import argparse
import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shapely.geometry import MultiPolygon

from ..cli_in_process import argument_problem, run_in_process
from ..errors import InputError, NucleiError
from ..nuclei import Nuclei
from ..outputs.readers import read_nuclei

METHOD_CLIS = ("UDNetDetection", "CascadeGCNDetection", "FasterRCNNDetection", "R2UNetSegmentation",
               "HoVerNetSegmentation", "GraphAttentionSegmentation", "DCRNClassification")
FORWARDED = ("input_mag", "min_fgnd_frac", "analysis_tile_size", "batch_size", "device", "precision", "scheduler",
             "num_workers")
_ENTRY = re.compile(r"^\s*(\w+)\s*(?:\((.*)\))?\s*$")


@dataclass(frozen=True)
class MethodRun:
    """A method CLI and the options it runs with; ``label`` names it in outputs."""

    cli: str
    options: str = ""

    @property
    def label(self) -> str:
        return f"{self.cli}({self.options})" if self.options else self.cli

    def argv(self) -> list[str]:
        try:
            return shlex.split(self.options)
        except ValueError as exc:
            raise InputError(f"the options of {self.cli} cannot be read: {exc}") from None


def parse_method(cli: str, options: str = "") -> MethodRun:
    """A known method CLI with options it accepts (checked now, before any method runs)."""
    if cli not in METHOD_CLIS:
        raise InputError(f"unknown method {cli!r}: choose from {', '.join(METHOD_CLIS)}")
    method = MethodRun(cli, options.strip())
    problem = argument_problem(cli, method.argv())
    if problem:
        raise InputError(f"the options of {method.label} are refused: {problem}")
    return method


def parse_method_list(text: str) -> list[MethodRun]:
    """``"UDNetDetection, CascadeGCNDetection(--detector CP-CNN)"``: methods separated by commas, each with
    its options in parentheses."""
    entries = [e for e in re.split(r",(?![^()]*\))", text) if e.strip()]
    runs = []
    for entry in entries:
        found = _ENTRY.match(entry)
        if not found:
            raise InputError(f"cannot read the method {entry.strip()!r}: write Name or Name(--option value)")
        runs.append(parse_method(found.group(1), found.group(2) or ""))
    if len(set(runs)) != len(runs):
        raise InputError("a method is listed twice with the same options")
    return runs


def region_values(region: MultiPolygon) -> str:
    """The region as the ``analysis_roi`` polygon syntax of every CLI (outer rings, ``-1,-1`` between them)."""
    rings = [[f"{x:.1f},{y:.1f}" for x, y in polygon.exterior.coords[:-1]] for polygon in region.geoms]
    return ",-1,-1,".join(",".join(ring) for ring in rings)


def run_method(method: MethodRun, slide_path: str, region: MultiPolygon | None, args: argparse.Namespace) -> Nuclei:
    """The nuclei ``method`` finds on the slide (only over ``region``), with the compute settings of ``args``."""
    with tempfile.TemporaryDirectory(prefix="nuclei-method-") as folder:
        output = Path(folder) / f"{method.cli}.anot"
        argv = [slide_path, str(output)]
        if region is not None:
            argv += ["--analysis_roi", region_values(region)]
        for name in FORWARDED:
            argv += [f"--{name}", str(getattr(args, name))]
        problem = run_in_process(method.cli, [*argv, *method.argv()])
        if problem:
            raise NucleiError(f"the method {method.label} failed: {problem}; nothing was written")
        return read_nuclei(output)
