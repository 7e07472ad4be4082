"""large_image annotation JSON for the DSA: points for detections, closed polylines for contours."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..nuclei import Nuclei
from .colors import class_color, css_rgb

DEFAULT_MAX_ELEMENTS = 100_000


def _element(nuclei: Nuclei, index: int, label: str, color: tuple[int, int, int]) -> dict[str, Any]:
    user = {"score": round(float(nuclei.scores[index]), 4),  # a missing (NaN) measurement is left out: strict JSON
            **{k: round(float(v[index]), 4) for k, v in nuclei.measurements.items() if math.isfinite(v[index])}}
    common = {"group": label, "lineColor": css_rgb(color), "lineWidth": 2, "user": user}
    if nuclei.contours is not None:
        points = [[round(float(x), 2), round(float(y), 2), 0] for x, y in nuclei.contours[index]]
        return {"type": "polyline", "closed": True, "points": points,
                "fillColor": css_rgb(color, 0.25), **common}
    x, y = nuclei.centroids[index]
    return {"type": "point", "center": [round(float(x), 2), round(float(y), 2), 0],
            "fillColor": css_rgb(color, 0.8), **common}


def _description(count: int, attributes: dict[str, Any]) -> str:
    """What HistomicsUI shows under an annotation: nuclei, model, and the settings changed from the defaults."""
    def shown(value: Any) -> str:
        if isinstance(value, list):
            return ",".join(map(shown, value))
        return f"{value:g}" if isinstance(value, float) else str(value)

    changed = attributes.get("changed_parameters") or {}
    settings = ", ".join(f"{name}={shown(value)}" for name, value in changed.items())
    return "; ".join(filter(None, (f"{count} nuclei", attributes.get("model", ""),
                                   f"settings: {settings}" if changed else "default settings")))


def annotation_documents(nuclei: Nuclei, name: str, attributes: dict[str, Any],
                         max_elements: int = DEFAULT_MAX_ELEMENTS) -> list[dict[str, Any]]:
    """One annotation document per ``max_elements`` nuclei (at least one, possibly empty)."""
    labels = nuclei.class_labels()
    colors = {n: class_color(n, i) for i, n in enumerate(nuclei.class_names)}
    elements = [_element(nuclei, i, labels[i], colors[labels[i]]) for i in range(len(nuclei))]
    chunks = [elements[i:i + max_elements] for i in range(0, len(elements), max_elements)] or [[]]
    documents = []
    for number, chunk in enumerate(chunks, start=1):
        title = name if len(chunks) == 1 else f"{name} ({number} of {len(chunks)})"
        documents.append({"name": title, "description": _description(len(chunk), attributes),
                          "attributes": {**attributes, "part": number, "parts": len(chunks)},
                          "elements": chunk})
    return documents


def write_annotation(path: Path, documents: list[dict[str, Any]]) -> None:
    """A single document as an object, several as a list (large_image ingests both)."""
    payload: Any = documents[0] if len(documents) == 1 else documents
    with open(path, "w") as handle:
        json.dump(payload, handle, separators=(",", ":"), allow_nan=False)
