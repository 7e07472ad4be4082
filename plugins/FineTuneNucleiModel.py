"""FineTuneNucleiModel: fine-tune the shipped nucleus detector on the pathologist's annotated regions."""

from __future__ import annotations

import sys

from nuclei_core.cli import run_guarded
from nuclei_core.review.fine_tune_cli import CLI_NAME, run


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code."""
    return run_guarded(CLI_NAME, run, argv)


if __name__ == "__main__":
    sys.exit(main())
