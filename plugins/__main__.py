"""The Docker entrypoint contract of the DSA: ``--list_cli``, ``<CLI> --xml``, ``<CLI> args...``."""

from __future__ import annotations

import importlib
import json
import sys

from nuclei_core.interrupts import EXIT_CODE, ctrl_c_as_exception, leave_at_once_on_ctrl_c

PROG = "python -m plugins"
USAGE = f"""usage: {PROG} --list_cli | <CLI> --xml | <CLI> --help | <CLI> [parameters...]

Nucleus analysis CLIs for the DSA.
  --list_cli   print the JSON list of CLIs (what slicer_cli_web reads) and exit
  <CLI>        run that CLI; '<CLI> --help' explains each of its parameters, '<CLI> --xml' prints its spec
CLIs: {{names}}"""


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a CLI, or list them as slicer_cli_web expects; a wrong first argument is a one-line error."""
    from nuclei_core.cli_spec import available_clis, cli_parser  # here, so that Ctrl-C while importing is caught

    argv = sys.argv[1:] if argv is None else argv
    names = available_clis()
    first = argv[0] if argv else None
    if first == "--list_cli":
        print(json.dumps({name: {"type": "python"} for name in names}, indent=2))
        return 0
    if first in ("-h", "--help"):
        print(USAGE.format(names=", ".join(names)))
        return 0
    if first not in names:
        problem = "no CLI named" if first is None else f"unknown CLI {first!r}"
        print(f"{PROG}: error: {problem}; choose one of {', '.join(names)} (or --list_cli)", file=sys.stderr)
        return 2
    if argv[1:] in (["--xml"], ["--help"], ["-h"]):
        # asked of every CLI when slicer_cli_web registers an image: the parser answers and exits, no model loaded
        cli_parser(first).parse_args(argv[1:])
    cli = importlib.import_module(f"plugins.{first}")
    ctrl_c_as_exception()  # from here the CLI cleans up after Ctrl-C itself
    return cli.main(argv[1:])


def interruptible_main() -> int:
    """``main`` with Ctrl-C at any moment, from the first instant, as one line and exit code 130."""
    leave_at_once_on_ctrl_c(PROG)
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no output written", file=sys.stderr)
        return EXIT_CODE


if __name__ == "__main__":
    sys.exit(interruptible_main())
