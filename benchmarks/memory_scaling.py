"""Peak memory against slide size: the sample slide, and a synthetic slide made of N x N copies of it.

The larger slide is written as a real pyramidal Aperio SVS with ``large_image_converter`` so it is read
like any scanner file. Bounded memory means peak RSS stays nearly flat while tissue area grows N².
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from benchmarks.slide_speed import SAMPLE, count_elements, timed  # noqa: E402
from nuclei_core.engine.slide import Slide  # noqa: E402
from nuclei_core.engine.tiling import plan_tiles  # noqa: E402
from nuclei_core.models.udnet import UDNet  # noqa: E402


def tiled_copy(sample: Path, repeats: int, folder: Path) -> Path:
    """An Aperio SVS holding ``repeats`` x ``repeats`` copies of ``sample`` (20x, same pixel size)."""
    slide = Slide(sample)
    pixels = slide.read(0, 0, slide.width, slide.height, 1.0)
    mosaic = np.tile(pixels, (repeats, repeats, 1))
    flat = folder / "mosaic.tif"
    tifffile.imwrite(flat, mosaic, tile=(256, 256), photometric="rgb",
                     description="Aperio Image Library |AppMag = 20|MPP = 0.4990")
    target = folder / f"mosaic_{repeats}x{repeats}.svs"
    subprocess.run([str(Path(sys.executable).with_name("large_image_converter")), str(flat), str(target),
                    "--format", "aperio", "--compression", "jpeg", "--silent"], check=True)
    flat.unlink()
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for repeats in args.repeats:
            path = SAMPLE if repeats == 1 else tiled_copy(SAMPLE, repeats, Path(folder))
            slide = Slide(path)
            tissue_mp = plan_tiles(slide, UDNet.analysis_magnification, 1024, UDNet.halo, None,
                                   0.1).tissue_base_pixels / 1e6
            out = Path(folder) / "out.anot"
            seconds, peak = timed([sys.executable, "-m", "plugins", "UDNetDetection", str(path), str(out),
                                   "--device", args.device])
            nuclei = count_elements(out)
            rows.append({"slide": f"{repeats}x{repeats} copies", "size px": f"{slide.width} x {slide.height}",
                         "tissue MP": round(tissue_mp, 2), "nuclei": nuclei, "wall s": round(seconds, 1),
                         "tissue MP/s": round(tissue_mp / seconds, 3), "peak RSS MiB": round(peak)})
    body = ("UDNetDetection with default parameters, one fresh process per slide (start-up included).\n\n"
            f"{table(rows)}\n")
    print(write_result("memory_scaling", "Peak memory against slide size", body, {"rows": rows}))
    print(table(rows))


if __name__ == "__main__":
    main()
