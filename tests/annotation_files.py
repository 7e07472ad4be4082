"""Reading a method CLI's annotation file in tests: the document of nuclei, and the density maps beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def documents(path: Path) -> list[dict[str, Any]]:
    """Every document of an annotation file (one object, or a list)."""
    data = json.loads(Path(path).read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    return data if isinstance(data, list) else [data]


def nuclei_document(path: Path) -> dict[str, Any]:
    """The one document of nuclei in the file (a small region's result: one part), whatever else it holds."""
    found = [d for d in documents(path) if d["attributes"].get("content", "nuclei") == "nuclei"]
    assert len(found) == 1, f"{len(found)} documents of nuclei in {path}"
    return found[0]


def density_documents(path: Path) -> list[dict[str, Any]]:
    """The density map documents of the file."""
    return [d for d in documents(path) if d["attributes"].get("content") == "density"]
