"""Ctrl-C as one line, from the first instant of a process: while modules still import (where numpy's import
machinery would turn a KeyboardInterrupt into a long ImportError traceback) the process leaves at once; once a
script's ``main`` runs, Ctrl-C is an exception it turns into one line after cleaning up.

Only ``python -m nuclei_core.<script>`` and ``python -m plugins`` install the first handler, never an import of
the library by someone else's program."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

EXIT_CODE = 130
_named: list[str] = []  # the program's name for the message, when its starter gave one


def _program() -> str:
    """The name the message starts with: given, else the script's file name (known once ``-m`` found it)."""
    if _named:
        return _named[0]
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] not in ("", "-m", "-c") else "nuclei_core"


def _leave_now(signum: int, frame: object) -> None:
    os.write(2, f"{_program()}: interrupted; no output written\n".encode())
    os._exit(EXIT_CODE)


def leave_at_once_on_ctrl_c(program: str | None = None) -> None:
    """While the program (named ``program`` in the message, else by its file) starts and nothing is written yet:
    Ctrl-C ends it with one line and exit code 130."""
    _named[:] = [program] if program else []
    signal.signal(signal.SIGINT, _leave_now)


def ctrl_c_as_exception() -> None:
    """From here Ctrl-C raises KeyboardInterrupt, which the running script turns into one line after cleaning up."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
