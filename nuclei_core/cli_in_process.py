"""Running a CLI of the suite inside this process (the Girder runner, EvaluateNuclei's and CompareNucleiMethods'
methods): its progress shows as it comes, and its one-line error becomes the caller's, so the user still reads
one line."""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
from collections.abc import Iterator

from . import interrupts
from .cli_spec import cli_parser
from .errors import NucleiError
from .validation import check_parameters


class HeldErrorLine(io.TextIOBase):
    """A stderr that passes everything on to ``target`` but the CLI's own error (or interruption) line, which it
    keeps in ``message`` (``print`` writes the line and its newline in two calls; argparse in one)."""

    def __init__(self, target: io.TextIOBase, cli_name: str) -> None:
        self.target, self.cli_name = target, cli_name
        self.message: str | None = None
        self._newline_pending = False

    def write(self, text: str) -> int:
        if text.startswith(tuple(f"{self.cli_name}: {kind}" for kind in ("error: ", "unexpected error: ",
                                                                          "interrupted"))):
            self.message = text.removeprefix(f"{self.cli_name}: ").removeprefix("error: ").strip()
            self._newline_pending = not text.endswith("\n")
            return len(text)
        if self._newline_pending and text == "\n":
            self._newline_pending = False
            return len(text)
        self._newline_pending = False
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()


@contextlib.contextmanager
def held_error_line(cli_name: str) -> Iterator[HeldErrorLine]:
    """stderr through a :class:`HeldErrorLine` while the block runs."""
    held = HeldErrorLine(sys.stderr, cli_name)
    with contextlib.redirect_stderr(held):
        yield held


def run_in_process(cli_name: str, argv: list[str]) -> str | None:
    """Run ``cli_name`` on ``argv`` here: None when it succeeds, else why it failed (its error line); Ctrl-C,
    which the CLI answered by cleaning up, is raised again for the caller to answer."""
    with held_error_line(cli_name) as held:
        try:
            code = importlib.import_module(f"plugins.{cli_name}").main(argv)
        except SystemExit as exit_:  # argparse's errors
            code = exit_.code
    if code == interrupts.EXIT_CODE:
        raise KeyboardInterrupt
    return None if code == 0 else held.message or f"exit code {code}"


def argument_problem(cli_name: str, options: list[str]) -> str | None:
    """Why ``cli_name`` would refuse its ``options`` at once (an unknown flag, a number not finite or out of range),
    or None: checked before a slide is downloaded or a method run (a slide and an output are named for the check,
    which reads neither)."""
    with held_error_line(cli_name) as held:
        try:
            args = cli_parser(cli_name).parse_args(["slide.svs", "nuclei.anot", *options])
        except SystemExit:
            return held.message or "its arguments cannot be read"
    try:
        check_parameters(cli_name, args)
    except NucleiError as exc:
        return str(exc)
    return None
