"""EvaluateNuclei: score a method of the suite against the pathologist's own annotation of a slide."""

from __future__ import annotations

import sys

from nuclei_core.cli import run_guarded
from nuclei_core.review.evaluate import CLI_NAME, run


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code."""
    return run_guarded(CLI_NAME, run, argv)


if __name__ == "__main__":
    sys.exit(main())
