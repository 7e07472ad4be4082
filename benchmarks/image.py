"""The plugin image's figures: size, build times, start-up and CPU speed against the host.

Builds ``docker/Dockerfile`` from ``git archive HEAD`` with the machine's container engine (podman here:
``bash scripts/setup-machine.sh`` first), then measures:

- the image's size and its largest layers (goal: at most 4.5 GB);
- a cold build (``--no-cache``; with ``--cold``), a fully cached build, and a code-only rebuild after one
  changed source file (goal: under a minute);
- ``--list_cli`` in a fresh container (goal: under 2 s);
- UDNetDetection on the whole sample slide in the container against the same run on the host
  (``scripts/demo.sh``'s command), alternated run by run so that both see the same machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from benchmarks.report import table, write_result  # noqa: E402
from container_engine import Completed, ContainerEngine, export_committed_tree  # noqa: E402

SAMPLE = ROOT.parent / "shared/data/wsi/CMU-1-Small-Region.svs"
TAG = "localhost/nuclei-analysis:bench"
CHANGED_TAG = "localhost/nuclei-analysis:bench-code-change"


def checked(completed: Completed, what: str) -> Completed:
    """``completed``, or exit naming ``what`` failed with the end of its output."""
    if completed.returncode:
        raise SystemExit(f"{what} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    return completed


def spread(seconds: list[float]) -> dict[str, float]:
    """Minimum, median and maximum of ``seconds``, rounded."""
    return {"min s": round(min(seconds), 2), "median s": round(statistics.median(seconds), 2),
            "max s": round(max(seconds), 2)}


def build_rows(engine: ContainerEngine, context: Path, cold: bool) -> list[dict]:
    """Timed builds: cold (optional), fully cached, and after one changed source file."""
    rows = []
    if cold:
        built = checked(engine.call(["build", "--no-cache", "--pull=never", "-f", str(context / "docker/Dockerfile"),
                                     "-t", TAG, str(context)], timeout=3600), "cold build")
        rows.append({"build": "cold (no cache)", "wall s": round(built.seconds, 1)})
    built = checked(engine.build(context, TAG), "build")
    rows.append({"build": "first in this run" if not cold else "again, all layers cached",
                 "wall s": round(built.seconds, 1)})
    cached = checked(engine.build(context, TAG), "cached build")
    rows.append({"build": "all layers cached", "wall s": round(cached.seconds, 1)})
    with open(context / "nuclei_core/__init__.py", "a") as source:
        source.write(f"\n# changed for the code-only rebuild benchmark at {time.time()}\n")
    changed = checked(engine.build(context, CHANGED_TAG), "code-only rebuild")
    rows.append({"build": "code-only change (one source file)", "wall s": round(changed.seconds, 1)})
    engine.call(["rmi", CHANGED_TAG])
    return rows


def layer_rows(engine: ContainerEngine, top: int = 6) -> list[dict]:
    """The image's largest layers with the instruction that made each."""
    history = engine.call(["history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", TAG]).stdout
    rows = []
    for line in history.splitlines():
        size, created_by = line.split("\t", 1)
        rows.append({"layer size": size, "instruction": created_by.replace("|", "/")[:110]})
    return sorted(rows, key=lambda row: -parse_size(row["layer size"]))[:top]


def parse_size(text: str) -> float:
    """Bytes of an engine's human size (``4.1 GB``, ``512 kB``, ``0 B``)."""
    number, unit = text.split()
    return float(number) * {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}[unit]


def list_cli_seconds(engine: ContainerEngine, runs: int) -> list[float]:
    """Wall seconds of ``--list_cli`` in a fresh container, ``runs`` times (after one untimed run)."""
    checked(engine.run(TAG, ["--list_cli"]), "--list_cli")
    return [checked(engine.run(TAG, ["--list_cli"]), "--list_cli").seconds for _ in range(runs)]


def slide_rows(engine: ContainerEngine, slide: Path, runs: int) -> list[dict]:
    """UDNetDetection on ``slide``: in the container and on the host, alternated."""
    times: dict[str, list[float]] = {"container (image defaults)": [], "host (.venv, scripts/demo.sh's command)": []}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        out.chmod(0o777)
        for _ in range(runs):
            inside = checked(engine.run(TAG, ["UDNetDetection", f"/data/in/{slide.name}", "/data/out/c.anot"],
                                        mounts=((slide.parent, "/data/in", "ro"), (out, "/data/out", "rw"))),
                             "UDNetDetection in the container")
            times["container (image defaults)"].append(inside.seconds)
            started = time.monotonic()
            subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "plugins", "UDNetDetection", str(slide),
                            str(out / "h.anot")], cwd=ROOT, check=True, capture_output=True)
            times["host (.venv, scripts/demo.sh's command)"].append(time.monotonic() - started)
    return [{"where": where, **spread(seconds)} for where, seconds in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cold", action="store_true", help="also time a build with no cache (minutes)")
    parser.add_argument("--runs", type=int, default=5, help="timed --list_cli runs")
    parser.add_argument("--slide-runs", type=int, default=3, help="sample slide runs in each place")
    parser.add_argument("--slide", type=Path, default=SAMPLE)
    args = parser.parse_args()
    engine = ContainerEngine.find()
    with tempfile.TemporaryDirectory() as folder:
        builds = build_rows(engine, export_committed_tree(Path(folder) / "context"), args.cold)
    size = engine.image_size(TAG)
    layers = layer_rows(engine)
    list_cli = spread(list_cli_seconds(engine, args.runs))
    slide = slide_rows(engine, args.slide, args.slide_runs)
    version = checked(engine.call(["--version"]), "engine version").stdout.strip()
    body = (f"Engine: {version}. Image built from `git archive HEAD` (base `debian:bookworm-slim`; where no "
            "registry is reachable, the stand-in that ../shared/tools/container-engine.sh makes: 180 MB against "
            "Docker Hub's ~75 MB).\n\n"
            f"## Size\n\n{size / 1e9:.2f} GB ({size} bytes; goal at most 4.5 GB). Largest layers:\n\n"
            f"{table(layers)}\n\n## Builds\n\n{table(builds)}\n\n"
            f"## `--list_cli` in a fresh container (goal under 2 s), {args.runs} runs\n\n{table([list_cli])}\n\n"
            f"## UDNetDetection on `{args.slide.name}`, whole slide, {args.slide_runs} runs each, alternated\n\n"
            f"{table(slide)}\n")
    print(write_result("image", "The plugin image", body, {"size_bytes": size, "layers": layers, "builds": builds,
                                                            "list_cli": list_cli, "slide": slide}))
    print(body)


if __name__ == "__main__":
    main()
