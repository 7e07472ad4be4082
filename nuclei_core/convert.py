"""Convert nuclei between the DSA annotation JSON and QuPath GeoJSON, both ways.

    python -m nuclei_core.convert nuclei.anot nuclei.geojson      # DSA -> QuPath
    python -m nuclei_core.convert qupath.geojson nuclei.anot      # QuPath -> DSA
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

from . import interrupts
from .errors import NucleiError, OneLineArgumentParser
from .outputs.atomic import check_writable, write_all_or_nothing
from .outputs.dsa import annotation_documents, write_annotation
from .outputs.geojson import DETAILS, feature_collection, write_geojson
from .outputs.readers import is_geojson, read_nuclei
from .validation import check_not_an_input, check_output_suffix


def convert(source: str, target: str, name: str = "converted nuclei", detail: str = "full") -> int:
    """Write ``source``'s nuclei to ``target`` in the other format (GeoJSON outlines ``full``, ``simplified`` or
    as ``points``, for a QuPath target); returns how many."""
    check_output_suffix("target", target, [".anot", ".geojson"])
    check_not_an_input("target", target, {"source": source})
    check_writable(target)
    nuclei = read_nuclei(source)
    if is_geojson(target):
        writer = partial(write_geojson, collection=feature_collection(nuclei, name, detail),
                         compress=target.lower().endswith(".gz"))
    else:
        writer = partial(write_annotation, documents=annotation_documents(nuclei, name, {"source": Path(source).name}))
    write_all_or_nothing([(target, writer)])
    return len(nuclei)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog="python -m nuclei_core.convert", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="a .anot/.json DSA annotation or a .geojson(.gz) file")
    parser.add_argument("target", help="the output; its name chooses the format")
    parser.add_argument("--name", default="converted nuclei", help="annotation / object name to record")
    parser.add_argument("--geojson-detail", choices=DETAILS, default="full",
                        help="for a GeoJSON target: outlines as found (full), simplified (vertices that move an outline "
                             "by less than 0.25 µm at 0.5 µm/px removed: a smaller file QuPath opens faster) or the "
                             "centres only (points)")
    args = parser.parse_args(argv)
    interrupts.ctrl_c_as_exception()
    try:
        count = convert(args.source, args.target, args.name, args.geojson_detail)
    except NucleiError as exc:
        print(f"convert: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("convert: interrupted; no output written", file=sys.stderr)
        return interrupts.EXIT_CODE
    print(f"convert: wrote {count} nuclei to {args.target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
