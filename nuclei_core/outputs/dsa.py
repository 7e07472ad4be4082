"""large_image annotation JSON for the DSA: points for detections, closed polylines for contours.

Documents hold their elements as a lazy view of the nuclei (a :class:`LazySequence`), and
:func:`write_annotation` streams them, so a whole slide's million outlines are written in bounded memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..nuclei import Nuclei
from .colors import class_color, css_rgb
from .json_stream import LazySequence, write_object_with_array

DEFAULT_MAX_ELEMENTS = 100_000


def element_maker(nuclei: Nuclei) -> Callable[[int], dict[str, Any]]:
    """A function giving nucleus ``i`` as a large_image element (a closed polyline, else a point)."""
    labels = nuclei.class_labels()
    alpha = 0.25 if nuclei.contours is not None else 0.8
    styles = {n: {"lineColor": css_rgb(class_color(n, i)), "fillColor": css_rgb(class_color(n, i), alpha)}
              for i, n in enumerate(nuclei.class_names)}

    def element(index: int) -> dict[str, Any]:
        user = {"score": round(float(nuclei.scores[index]), 4),  # a missing (NaN) measurement is left out
                **{k: round(float(v[index]), 4) for k, v in nuclei.measurements.items() if math.isfinite(v[index])}}
        common = {"group": labels[index], **styles[labels[index]], "lineWidth": 2, "user": user}
        if nuclei.contours is not None:
            points = [[x, y, 0] for x, y in np.round(nuclei.contours[index], 2).tolist()]
            return {"type": "polyline", "closed": True, "points": points, **common}
        x, y = np.round(nuclei.centroids[index], 2).tolist()
        return {"type": "point", "center": [x, y, 0], **common}

    return element


def _description(count: int, attributes: dict[str, Any]) -> str:
    """What HistomicsUI shows under an annotation: nuclei, model, and the settings changed from the defaults."""
    def shown(value: Any) -> str:
        if isinstance(value, list):
            return ",".join(map(shown, value))
        return f"{value:g}" if isinstance(value, float) else str(value)

    changed = attributes.get("changed_parameters") or {}
    settings = ", ".join(f"{name}={shown(value)}" for name, value in changed.items())
    return "; ".join(filter(None, (f"{count} nuclei", _slide_line(count, attributes.get("summary")),
                                   attributes.get("model", ""),
                                   f"settings: {settings}" if changed else "default settings")))


def _slide_line(count: int, summary: dict[str, Any] | None) -> str:
    """The slide's count (where this document holds a part) and densities per mm² of tissue (per class when there
    are several), for a description."""
    if not summary or summary.get("per_mm2_tissue") is None:
        return ""
    classes = summary["classes"]
    per_class = ", ".join(f"{name} {values['per_mm2_tissue']:g}" for name, values in classes.items()
                          if values["per_mm2_tissue"] is not None) if len(classes) > 1 else ""
    part = f"of {summary['nuclei']} on the slide, " if count != summary["nuclei"] else ""
    return f"{part}{summary['per_mm2_tissue']:g} per mm² of tissue" + (f" ({per_class})" if per_class else "")


def annotation_documents(nuclei: Nuclei, name: str, attributes: dict[str, Any],
                         max_elements: int = DEFAULT_MAX_ELEMENTS) -> list[dict[str, Any]]:
    """One annotation document per ``max_elements`` nuclei (at least one, possibly empty); every part is named
    ``name (i of n)`` and records ``content: nuclei``, ``part`` and ``parts`` in its attributes, so the set can be
    filtered as one (density maps of the same run record ``content: density``)."""
    starts = list(range(0, len(nuclei), max_elements)) or [0]
    make = element_maker(nuclei)
    documents = []
    for number, start in enumerate(starts, start=1):
        elements = LazySequence(make, range(start, min(len(nuclei), start + max_elements)))
        title = name if len(starts) == 1 else f"{name} ({number} of {len(starts)})"
        documents.append({"name": title, "description": _description(len(elements), attributes),
                          "attributes": {**attributes, "content": "nuclei", "part": number, "parts": len(starts)},
                          "elements": elements})
    return documents


def write_annotation(path: Path, documents: list[dict[str, Any]]) -> None:
    """A single document as an object, several as a list (large_image ingests both); elements streamed."""
    with open(path, "w") as handle:
        if len(documents) > 1:
            handle.write("[")
        for number, document in enumerate(documents):
            handle.write("," if number else "")
            header = {k: v for k, v in document.items() if k != "elements"}
            write_object_with_array(handle, header, "elements", document["elements"])
        if len(documents) > 1:
            handle.write("]")

