"""A small picture of an evaluation: the scores as text and, when there are classes, the confusion matrix."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_SIZE = 15
LINE = 22
CELL = 54


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str, float]]:
    """(section, metric, class, value) for every number of the detection, outline and class scores."""
    rows = [("detection", k, "", float(v)) for k, v in metrics["detection"].items()]
    rows += [("outlines", k, "", float(v)) for k, v in (metrics.get("outlines") or {}).items()]
    classes = metrics.get("classification")
    if classes:
        rows += [("classification", k, "", float(classes[k])) for k in ("accuracy", "weighted_f1", "macro_f1")]
        rows += [("classification", k, name, v) for name, scores in classes["per_class"].items()
                 for k, v in scores.items()]
    return rows


def _summary_lines(metrics: dict[str, Any]) -> list[str]:
    d = metrics["detection"]
    lines = [f"{metrics['predictions']} vs {metrics['truth']}",
             f"within {metrics['match_radius_um']:g} um ({metrics['match_radius_px']:.1f} px), "
             f"{metrics['regions']} region(s)",
             f"truth {d['truth_nuclei']}   predicted {d['predicted_nuclei']}",
             f"TP {d['tp']}   FP {d['fp']}   FN {d['fn']}",
             f"precision {d['precision']:.3f}   recall {d['recall']:.3f}   F1 {d['f1']:.3f}"]
    if metrics.get("outlines"):
        o = metrics["outlines"]
        lines.append(f"Dice {o['dice']:.3f}   AJI {o['aji']:.3f}   PQ {o['pq']:.3f}")
        lines.append(f"true nuclei merged {o['merged_nuclei']}   split {o['split_nuclei']}   "
                     f"missed {o['missed_nuclei']}   spurious outlines {o['spurious_outlines']}")
    if metrics.get("classification"):
        c = metrics["classification"]
        lines.append(f"classes: accuracy {c['accuracy']:.3f}   weighted F1 {c['weighted_f1']:.3f}   "
                     f"macro F1 {c['macro_f1']:.3f}")
    return lines


def render_report(metrics: dict[str, Any]) -> Image.Image:
    """The summary lines, then the confusion matrix (rows: truth, columns: prediction) shaded by row share."""
    font = ImageFont.load_default(size=FONT_SIZE)
    lines = _summary_lines(metrics)
    classes = metrics.get("classification")
    names = classes["classes"] if classes else []
    matrix = np.array(classes["confusion_matrix"]) if classes else np.zeros((0, 0))
    label_width = max((int(font.getlength(n)) for n in names), default=0) + 16
    width = max(560, max(int(font.getlength(t)) for t in lines) + 24, label_width + CELL * len(names) + 24)
    top = 12 + LINE * len(lines) + (LINE * 2 if names else 0)
    image = Image.new("RGB", (width, top + CELL * len(names) + 12), "white")
    draw = ImageDraw.Draw(image)
    for i, text in enumerate(lines):
        draw.text((12, 12 + LINE * i), text, fill="black", font=font)
    if names:
        draw.text((12, top - LINE * 2 + 4), "confusion matrix (rows: truth, columns: predicted)", fill="black",
                  font=font)
        shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        for j, name in enumerate(names):  # column headings: the initials keep the cells narrow
            draw.text((12 + label_width + CELL * j + 4, top - LINE), name[:6], fill="black", font=font)
        for i, name in enumerate(names):
            y = top + CELL * i
            draw.text((12, y + CELL // 2 - 8), name, fill="black", font=font)
            for j in range(len(names)):
                x = 12 + label_width + CELL * j
                shade = int(255 - 180 * shares[i, j])
                draw.rectangle([x, y, x + CELL - 2, y + CELL - 2], fill=(shade, shade, 255), outline="grey")
                draw.text((x + 6, y + CELL // 2 - 8), str(int(matrix[i, j])), fill="black", font=font)
    return image


def undefined_as_null(value: Any) -> Any:
    """``value`` with every NaN or infinite number (an undefined metric: an F1 without nuclei, an AUC of one
    class) replaced by None, so that it is written as strict JSON's ``null``."""
    if isinstance(value, dict):
        return {k: undefined_as_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [undefined_as_null(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics_json(path: Path, metrics: dict[str, Any]) -> None:
    """The whole metrics record, indented, strict JSON (undefined metrics are null)."""
    path.write_text(json.dumps(undefined_as_null(metrics), indent=2, allow_nan=False) + "\n")


def write_metrics_csv(path: Path, metrics: dict[str, Any]) -> None:
    """One row per number: section, metric, class, value."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["section", "metric", "class", "value"])
        writer.writerows(metric_rows(metrics))
