"""The Docker entrypoint contract of the DSA: ``--list_cli``, ``<CLI> --xml``, ``<CLI> args...``."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from nuclei_core.cli_spec import available_clis, cli_parser


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a CLI, or list them as slicer_cli_web expects."""
    argv = sys.argv[1:] if argv is None else argv
    names = available_clis()
    parser = argparse.ArgumentParser(prog="python -m plugins", description="Nucleus analysis CLIs for the DSA")
    parser.add_argument("--list_cli", action="store_true", help="print the JSON list of CLIs and exit")
    parser.add_argument("cli", nargs="?", choices=names, help="the CLI to run; its own --help lists its parameters")
    options = parser.parse_args(argv[:1])
    if options.list_cli:
        print(json.dumps({name: {"type": "python"} for name in names}, indent=2))
        return 0
    if options.cli is None:
        parser.print_help()
        return 2
    if argv[1:] in (["--xml"], ["--help"], ["-h"]):
        # asked of every CLI when slicer_cli_web registers an image: the parser answers and exits, no model loaded
        cli_parser(options.cli).parse_args(argv[1:])
    return importlib.import_module(f"plugins.{options.cli}").main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
