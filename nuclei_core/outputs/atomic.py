"""All-or-nothing writes: each output goes to a temporary file beside it and is renamed at the end."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import OutputError

Writer = Callable[[Path], None]


def check_writable(path: str | Path) -> None:
    """Fail early (before any analysis) when ``path`` cannot be created or replaced."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output path {path} is a directory")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"output {path} is not writable")


def write_all_or_nothing(outputs: list[tuple[str | Path, Writer]]) -> None:
    """Run each writer on a temporary path, then rename them all; on any failure none is left behind."""
    staged: list[tuple[Path, Path]] = []
    try:
        for target, writer in outputs:
            target = Path(target)
            handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            os.close(handle)
            staged.append((Path(temporary), target))
            writer(Path(temporary))
        for temporary, target in staged:
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
    except OSError as exc:
        raise OutputError(f"cannot write output: {exc}") from None
    finally:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
