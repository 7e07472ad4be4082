"""Whole-slide results at full scale: writing, reading and ingesting 100k to 1M nuclei.

The nuclei are real: UDNetDetection (points) and HoVerNetSegmentation (outlines with classes and measurements) run
on the whole sample slide, and their nuclei are repeated, copy by copy, across a synthetic slide made of the same
number of copies of the sample (a tiled JPEG pyramid TIFF at 20x), so that the geometry and the tissue are real.
For each kind and count, one fresh process builds the table and writes every output the CLIs write (the DSA
annotation split into documents of 100,000, the density maps, the QuPath GeoJSON plain, gzipped, simplified and as
points, the overlay, the slide summary and the per-nucleus table), then reads the annotation and the GeoJSON back
with our readers: time and peak RSS growth over the table (sampled every 10 ms) for each.

Then a real Girder server (tests/girder_launcher.py: Girder 5 with large_image and HistomicsUI, its database
mongomock) ingests each annotation file the way a DSA job's output arrives (an upload carrying slicer_cli_web's
reference, HistomicsUI's data.process handler), the elements are counted back and every document is fetched back
through the annotation API. mongomock keeps every element as Python objects, so the server's memory is not a
MongoDB server's; its peak RSS is reported and a run stops (and says so) when it passes ``--server-memory-gb``.

    .venv/bin/python benchmarks/result_scale.py                      # 100k, 500k, 1M (about 30 min on 2 cores)
    .venv/bin/python benchmarks/result_scale.py --counts 20000 --ingest-counts 20000 --name result_scale_quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.gpu_slide_throughput import synthetic_slide  # noqa: E402
from benchmarks.report import table, write_result  # noqa: E402
from benchmarks.slide_speed import SAMPLE  # noqa: E402
from nuclei_core.engine.slide import Slide  # noqa: E402
from nuclei_core.engine.tiling import plan_tiles  # noqa: E402
from nuclei_core.nuclei import Nuclei  # noqa: E402
from nuclei_core.outputs.density import density_documents  # noqa: E402
from nuclei_core.outputs.dsa import annotation_documents, write_annotation  # noqa: E402
from nuclei_core.outputs.geojson import feature_collection, write_geojson  # noqa: E402
from nuclei_core.outputs.overlay import render_overlay, write_png  # noqa: E402
from nuclei_core.outputs.readers import read_nuclei  # noqa: E402
from nuclei_core.outputs.summary import slide_summary, write_nucleus_table, write_summary  # noqa: E402

SOURCES = {"points": "UDNetDetection", "outlines": "HoVerNetSegmentation"}
MAX_ELEMENTS = 100_000  # the CLIs' default annotation_max_elements
MIB = 2 ** 20


class PeakMemory:
    """Peak RSS growth (MiB) of a process over its RSS at the start, sampled every 10 ms while the block runs."""

    def __init__(self, pid: int | None = None) -> None:
        self._process = psutil.Process(pid)
        self._stop = threading.Event()
        self.start = self.peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
            except psutil.NoSuchProcess:
                return

    def __enter__(self) -> "PeakMemory":
        self.start = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / MIB


def source_nuclei(kind: str, folder: Path) -> Path:
    """Run the kind's CLI on the whole sample slide; its annotation file."""
    out = folder / f"source-{kind}.anot"
    if not out.exists():
        subprocess.run([sys.executable, "-m", "plugins", SOURCES[kind], str(SAMPLE), str(out), "--precision",
                        "float32"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return out


def copies_grid(count: int, per_copy: int) -> tuple[int, int]:
    """Columns and rows of sample copies that hold at least ``count`` nuclei, as square as the slide allows."""
    copies = -(-count // per_copy)
    columns = int(np.ceil(np.sqrt(copies)))
    return columns, -(-copies // columns)


def replicated(nuclei: Nuclei, width: int, height: int, count: int) -> Nuclei:
    """``count`` nuclei: ``nuclei`` (of a ``width`` x ``height`` slide) repeated copy by copy across a grid."""
    columns, rows = copies_grid(count, len(nuclei))
    offsets = [(c * width, r * height) for r in range(rows) for c in range(columns)]
    parts = [nuclei.transformed(1.0, offset) for offset in offsets]
    return Nuclei.concatenate(parts, nuclei.class_names).select(np.arange(columns * rows * len(nuclei)) < count)


def timed_output(rows: list[dict], name: str, action: Callable[[], Path | None]) -> Any:
    """Run ``action`` (which may write a file), adding a row with its seconds, peak RSS growth and file size."""
    started = time.perf_counter()
    with PeakMemory() as memory:
        result = action()
    rows.append({"output": name, "seconds": round(time.perf_counter() - started, 2),
                 "peak RSS growth MiB": round(memory.growth_mib),
                 "size MB": round(result.stat().st_size / 1e6, 1) if isinstance(result, Path) else ""})
    return result


def child(kind: str, count: int, folder: Path, slide_path: Path) -> dict[str, Any]:
    """In a fresh process: build ``count`` nuclei of ``kind`` and write and read every output (the rows)."""
    source = read_nuclei(source_nuclei(kind, folder))
    sample = Slide(SAMPLE)
    nuclei = replicated(source, sample.width, sample.height, count)
    slide = Slide(slide_path)
    plan = plan_tiles(slide, 20, 1024, 32, None, 0.1)
    base = folder / f"{kind}-{count}"
    rows: list[dict] = []
    mpp = slide.microns_per_pixel
    summary = timed_output(rows, "slide summary (attributes)", lambda: slide_summary(nuclei, plan, None, mpp))
    attributes = {"cli": SOURCES[kind], "summary": summary}
    densities = timed_output(rows, "density maps (griddata)", lambda: density_documents(
        nuclei, plan, mpp, 100, "viridis", "run", attributes))

    def annotation() -> Path:
        documents = [*annotation_documents(nuclei, "run", attributes, MAX_ELEMENTS), *densities]
        write_annotation(base.with_suffix(".anot"), documents)
        return base.with_suffix(".anot")

    def geojson(detail: str, suffix: str) -> Callable[[], Path]:
        def write() -> Path:
            path = base.with_name(f"{base.name}-{detail}{suffix}")
            write_geojson(path, feature_collection(nuclei, "run", detail, mpp), compress=suffix.endswith(".gz"))
            return path
        return write

    def written(path: Path, writer: Callable[[Path], None]) -> Callable[[], Path]:
        return lambda: (writer(path), path)[1]

    timed_output(rows, "DSA annotation (.anot, split)", annotation)
    timed_output(rows, "GeoJSON full", geojson("full", ".geojson"))
    timed_output(rows, "GeoJSON full .gz", geojson("full", ".geojson.gz"))
    for detail in ("simplified", "points") if kind == "outlines" else ():
        timed_output(rows, f"GeoJSON {detail}", geojson(detail, ".geojson"))
    timed_output(rows, "overlay PNG", written(base.with_suffix(".png"),
                                              lambda p: write_png(p, render_overlay(slide, nuclei))))
    timed_output(rows, "summary JSON", written(base.with_suffix(".json"),
                                               lambda p: write_summary(p, summary, as_csv=False)))
    timed_output(rows, "per-nucleus table .csv.gz", written(base.with_suffix(".csv.gz"),
                                                            lambda p: write_nucleus_table(p, nuclei, True)))
    back = timed_output(rows, "read back: DSA annotation", lambda: read_nuclei(base.with_suffix(".anot")))
    assert len(back) == count, (len(back), count)
    back = timed_output(rows, "read back: GeoJSON full .gz",
                        lambda: read_nuclei(base.with_name(f"{base.name}-full.geojson.gz")))
    assert len(back) == count, (len(back), count)
    return {"kind": kind, "count": count, "process RSS MiB": round(psutil.Process().memory_info().rss / MIB),
            "documents": -(-count // MAX_ELEMENTS) + len(densities), "rows": rows}


def output_rows(folder: Path, slide_path: Path, kinds: list[str], counts: list[int]) -> list[dict[str, Any]]:
    """One fresh process per kind and count (:func:`child`)."""
    results = []
    for kind in kinds:
        for count in counts:
            saved = folder / f"writes-{kind}-{count}.json"
            if saved.exists():  # measured by an earlier run of this command in the same --work-folder
                results.append({**json.loads(saved.read_text()), "measured": "earlier run"})
                continue
            run = subprocess.run([sys.executable, __file__, "--child", kind, str(count), str(folder), str(slide_path)],
                                 cwd=ROOT, capture_output=True, text=True)
            if run.returncode:
                raise RuntimeError(f"{kind} {count}: {run.stderr[-3000:]}")
            results.append(json.loads(run.stdout.strip().splitlines()[-1]))
            saved.write_text(json.dumps(results[-1]))
            results[-1]["measured"] = "this run"
            print(f"{kind} {count}: done", file=sys.stderr)
    return results


def ingest(server: Any, process: psutil.Process, slide_file: dict, annotation: Path, expected: int,
           memory_cap_gb: float) -> dict[str, Any]:
    """Upload ``annotation`` as a DSA job's output for the slide's item; wait for the server to ingest it, count
    its nucleus elements back and fetch every document; times and the server's peak RSS."""
    client = server.client
    reference = json.dumps({"identifier": "outputNucleiAnnotationFile", "userId": client.get("user/me")["_id"],
                            "fileId": slide_file["_id"], "itemId": slide_file["itemId"], "uuid": str(uuid.uuid4())})
    before = {a["_id"] for a in client.get("annotation", parameters={"itemId": slide_file["itemId"], "limit": 0})}
    started = time.perf_counter()
    with PeakMemory(process.pid) as memory:
        upload = threading.Thread(target=client.uploadFileToFolder, args=(server.folder_id, str(annotation)),
                                  kwargs={"reference": reference}, daemon=True)
        upload.start()
        while upload.is_alive():
            upload.join(0.5)
            if memory.peak > memory_cap_gb * 2 ** 30:
                process.kill()
                return {"ingested": f"stopped: server over {memory_cap_gb:g} GB", "server peak RSS MiB":
                        round(memory.peak / MIB)}
        listed = [a for a in client.get("annotation", parameters={"itemId": slide_file["itemId"], "limit": 0})
                  if a["_id"] not in before]
    ingest_seconds = time.perf_counter() - started
    nuclei = sum(a["_elementCount"] for a in listed if a["annotation"]["attributes"].get("content") == "nuclei")
    started = time.perf_counter()
    fetched = sum(len(client.get(f"annotation/{a['_id']}")["annotation"]["elements"]) for a in listed)
    row = {"ingest s": round(ingest_seconds, 1), "server peak RSS MiB": round(memory.peak / MIB),
           "documents": len(listed), "nuclei counted back": nuclei, "all there": nuclei == expected,
           "fetch all s": round(time.perf_counter() - started, 1), "elements fetched": fetched}
    for annotation_id in (a["_id"] for a in listed):
        client.delete(f"annotation/{annotation_id}")
    return row


def ingest_rows(folder: Path, kinds: list[str], counts: list[int], memory_cap_gb: float) -> list[dict[str, Any]]:
    """Each kind's annotation files ingested by one real Girder server, smallest first (a fresh server after a
    run that passed the memory cap)."""
    from conftest import running_girder

    rows = []
    for kind in kinds:
        stopped = False
        for count in counts:
            row = {"kind": kind, "count": count}
            saved = folder / f"ingest-{kind}-{count}.json"
            if saved.exists():  # measured by an earlier run of this command in the same --work-folder
                rows.append({**row, "measured": "earlier run", **json.loads(saved.read_text())})
                stopped = "stopped" in str(rows[-1].get("ingested", ""))
                continue
            if stopped:
                rows.append({**row, "ingested": "not tried: a smaller count passed the memory cap"})
                continue
            root = Path(tempfile.mkdtemp(prefix=f"girder-{kind}-{count}-", dir=folder))
            with running_girder(root) as (server, process):
                slide_file = server.client.uploadFileToFolder(server.folder_id, str(SAMPLE))
                measured = ingest(server, psutil.Process(process.pid), slide_file,
                                  folder / f"{kind}-{count}.anot", count, memory_cap_gb)
            rows.append({**row, "measured": "this run", **measured})
            saved.write_text(json.dumps(measured))
            stopped = "stopped" in str(measured.get("ingested", ""))
            print(f"ingest {kind} {count}: {measured}", file=sys.stderr)
    return rows


def filled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with every key any of them has (empty where a row lacks it), for one table."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return [{k: row.get(k, "") for k in keys} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[100_000, 500_000, 1_000_000])
    parser.add_argument("--ingest-counts", type=int, nargs="*", default=[100_000, 500_000, 1_000_000])
    parser.add_argument("--kinds", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    parser.add_argument("--server-memory-gb", type=float, default=10.0)
    parser.add_argument("--name", default="result_scale")
    parser.add_argument("--work-folder", type=Path, help="keep the sources, slide, files and each measured row here "
                                                         "instead of a temporary folder; a rerun reuses what it finds")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "COUNT", "FOLDER", "SLIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, count, folder, slide_path = args.child
        print(json.dumps(child(kind, int(count), Path(folder), Path(slide_path))))
        return
    with tempfile.TemporaryDirectory(prefix="result-scale-") as temporary:
        folder = args.work_folder or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        for kind in args.kinds:
            source_nuclei(kind, folder)
        per_copy = min(len(read_nuclei(source_nuclei(k, folder))) for k in args.kinds)
        columns, rows = copies_grid(max(args.counts), per_copy)
        sample = Slide(SAMPLE)
        slide_path = folder / f"slide-{columns}x{rows}.tiff"
        if not slide_path.exists():
            synthetic_slide(SAMPLE, columns * sample.width, rows * sample.height, slide_path, enlarge=1.0)
        results = output_rows(folder, slide_path, args.kinds, args.counts)
        ingested = ingest_rows(folder, args.kinds, [c for c in args.counts if c in args.ingest_counts],
                               args.server_memory_gb)
    write_rows = [{"kind": r["kind"], "nuclei": r["count"], **row, "measured": r["measured"]}
                  for r in results for row in r["rows"]]
    body = (f"Nuclei from {', '.join(f'{SOURCES[k]} ({k})' for k in args.kinds)} on the whole sample slide, "
            f"repeated across a synthetic slide of {columns} x {rows} copies of it "
            f"({columns * sample.width} x {rows * sample.height} px at 20x). One fresh process per kind and count; "
            "peak RSS growth is over the process once the nuclei table is built (sampled every 10 ms). A row "
            "measured by an earlier run of the same command in the same --work-folder (which keeps each row as it is "
            "measured) says so.\n\n"
            "## Writing and reading back\n\n" + table(write_rows) + "\n\n"
            "RSS of each process at its end (the nuclei table, the imports, what was read back): "
            + ", ".join(f"{r['kind']} {r['count']}: {r['process RSS MiB']} MiB" for r in results) + "\n\n"
            "## Ingest by a real Girder server (HistomicsUI's data.process path) and fetch back\n\n"
            "The server's database is mongomock (in its process), not MongoDB: its memory holds every element "
            "as Python objects.\n\n" + (table(filled(ingested)) if ingested else "(not run)") + "\n")
    print(write_result(args.name, "Whole-slide results at full scale", body,
                       {"writes": results, "ingest": ingested}))


if __name__ == "__main__":
    main()
