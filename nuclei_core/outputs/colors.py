"""Class colours shared by every output format, so a class looks the same in the DSA, QuPath and PNGs."""

from __future__ import annotations

NAMED_COLORS: dict[str, tuple[int, int, int]] = {
    "nucleus": (0, 200, 0),
    "epithelial": (230, 30, 30),
    "fibroblast": (30, 120, 230),
    "inflammatory": (250, 200, 0),
    "others": (160, 160, 160),
    "other": (160, 160, 160),  # HoVer-Net's merged CoNSeP types: other, inflammatory, epithelial, spindle
    "spindle": (30, 120, 230),  # spindle-shaped (fibroblast, muscle, endothelial): the fibroblast colour
    "true positive": (0, 190, 0),  # EvaluateNuclei: found and right ...
    "false positive": (255, 140, 0),  # ... found but not in the truth ...
    "false negative": (230, 0, 230),  # ... in the truth but missed
    "consensus": (0, 230, 230),  # CompareNucleiMethods: nuclei that enough methods agree on
}
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def class_color(name: str, index: int) -> tuple[int, int, int]:
    """RGB of a class: its named colour, else the ``index``-th palette colour."""
    return NAMED_COLORS.get(name.lower(), PALETTE[index % len(PALETTE)])


def css_rgb(color: tuple[int, int, int], alpha: float | None = None) -> str:
    """``rgb(r,g,b)`` or ``rgba(r,g,b,a)`` as large_image annotations expect."""
    r, g, b = color
    return f"rgb({r},{g},{b})" if alpha is None else f"rgba({r},{g},{b},{alpha:g})"
