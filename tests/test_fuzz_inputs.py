"""Property-based fuzzing of what users hand us: annotation and GeoJSON files, the converter, region text,
and the CLI's numeric parameters (hypothesis, seeded and bounded so that CI takes about two minutes).

The invariant everywhere: a one-line error, a non-zero exit and no output; or exit 0 and strict JSON whose
every coordinate is a finite number (inside the image, for a CLI's output).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nuclei_core.engine.region import parse_region
from nuclei_core.errors import InputError
from nuclei_core.outputs.readers import read_nuclei, read_nuclei_and_regions
from annotation_files import nuclei_document

# Examples per property: about a minute and a half in all on 2 cores; benchmarks/reliability.py runs many more.
EXAMPLES = int(os.environ.get("NUCLEI_FUZZ_EXAMPLES", "800"))
FUZZ = settings(derandomize=True, deadline=None, max_examples=EXAMPLES, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

number = st.one_of(st.floats(), st.integers(-10 ** 12, 10 ** 12))  # NaN and infinities included
leaf = st.one_of(st.none(), st.booleans(), number, st.text(max_size=4))
json_value = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=4), inner, max_size=4)),
                          max_leaves=12)
coordinate = st.one_of(st.lists(number, min_size=2, max_size=3), json_value)
ring = st.one_of(st.lists(st.lists(number, min_size=2, max_size=3), max_size=6), json_value)
element = st.one_of(
    st.fixed_dictionaries({"type": st.just("point"), "center": coordinate},
                          optional={"group": json_value, "user": json_value}),
    st.fixed_dictionaries({"type": st.just("polyline"), "closed": st.one_of(st.just(True), json_value),
                           "points": ring}, optional={"group": json_value, "label": json_value}),
    st.fixed_dictionaries({"type": st.just("rectangle"), "center": coordinate, "width": number,
                           "height": number}, optional={"rotation": number}),
    json_value)
annotation = st.one_of(
    st.fixed_dictionaries({"name": st.text(max_size=4), "elements": st.one_of(st.lists(element, max_size=8),
                                                                              json_value)}),
    st.lists(st.fixed_dictionaries({"elements": st.lists(element, max_size=4)}), max_size=3),
    json_value)
geometry = st.one_of(
    st.fixed_dictionaries({"type": st.just("Point"), "coordinates": coordinate}),
    st.fixed_dictionaries({"type": st.just("MultiPoint"), "coordinates": ring}),
    st.fixed_dictionaries({"type": st.just("Polygon"), "coordinates": st.one_of(st.lists(ring, max_size=2),
                                                                                json_value)}),
    json_value)
feature = st.one_of(st.fixed_dictionaries(
    {"type": st.just("Feature"), "geometry": geometry},
    optional={"properties": st.one_of(json_value, st.fixed_dictionaries(
        {"classification": st.one_of(json_value, st.fixed_dictionaries({"name": json_value})),
         "measurements": json_value}))}), json_value)
geojson = st.one_of(st.fixed_dictionaries({"type": st.just("FeatureCollection"),
                                           "features": st.one_of(st.lists(feature, max_size=8), json_value)}),
                    st.lists(feature, max_size=4), json_value)


def _write(path, document, truncate: int | None) -> None:
    """``document`` as JSON (NaN and Infinity written as the tokens Python emits), gzipped for a .gz path,
    cut to ``truncate`` bytes if given."""
    data = json.dumps(document, allow_nan=True).encode()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data if truncate is None else data[:truncate])


# Outcomes per property, for benchmarks/reliability.py (NUCLEI_FUZZ_REPORT=path writes them as JSON).
OUTCOMES: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def outcome_report():
    yield
    report = os.environ.get("NUCLEI_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps([[p, o, n] for (p, o), n in sorted(OUTCOMES.items())], indent=1))


def _all_finite(nuclei) -> bool:
    rings = [] if nuclei.contours is None else nuclei.contours
    return bool(np.isfinite(nuclei.centroids).all() and all(np.isfinite(r).all() for r in rings)
                and np.isfinite(nuclei.scores).all())


def _read_or_one_line_error(read, path):
    try:
        result = read(path)
    except InputError as error:
        assert "\n" not in str(error) and str(error), repr(str(error))
        OUTCOMES[(f"{read.__name__} {path.name}", "one-line error")] += 1
        return None
    OUTCOMES[(f"{read.__name__} {path.name}", "nuclei read")] += 1
    return result


@pytest.mark.parametrize("suffix,documents", [(".anot", annotation), (".geojson", geojson),
                                              (".geojson.gz", geojson)])
def test_reading_any_document_gives_finite_nuclei_or_one_line_error(suffix, documents, tmp_path):
    @FUZZ
    @given(document=documents, truncate=st.one_of(st.none(), st.integers(0, 200)))
    def check(document, truncate):
        path = tmp_path / f"input{suffix}"
        _write(path, document, truncate)
        for read in (read_nuclei, read_nuclei_and_regions):
            result = _read_or_one_line_error(read, path)
            if result is not None:
                nuclei = result[0] if isinstance(result, tuple) else result
                assert _all_finite(nuclei)

    check()


@pytest.mark.parametrize("source_suffix,target_suffix,documents", [
    (".anot", ".geojson", annotation), (".geojson", ".anot", geojson), (".geojson.gz", ".json", geojson)])
def test_converter_writes_strict_json_or_fails_in_one_line_without_output(source_suffix, target_suffix, documents,
                                                                         tmp_path, capfd):
    from nuclei_core.convert import main as convert

    @FUZZ
    @given(document=documents, truncate=st.one_of(st.none(), st.integers(0, 200)))
    def check(document, truncate):
        source, target = tmp_path / f"in{source_suffix}", tmp_path / f"out{target_suffix}"
        target.unlink(missing_ok=True)
        _write(source, document, truncate)
        code = convert([str(source), str(target)])
        stderr = capfd.readouterr().err.strip().splitlines()
        assert len(stderr) == 1, stderr
        if code != 0:
            assert stderr[0].startswith("convert: error:") and not target.exists()
            OUTCOMES[(f"convert {source.name} {target.name}", "one-line error")] += 1
            return
        written = json.loads(target.read_text(), parse_constant=lambda c: pytest.fail(f"{c} written"))
        assert _all_finite(read_nuclei(target)), written
        OUTCOMES[(f"convert {source.name} {target.name}", "converted")] += 1

    check()


plausible_box = st.tuples(st.integers(-50, 350), st.integers(-50, 250), st.integers(-10, 300), st.integers(-10, 300))
region_values = st.one_of(plausible_box.map(list), st.lists(st.one_of(number, st.sampled_from([-1, 0, 100, 250])),
                                                            max_size=12))


@FUZZ
@given(values=region_values)
def test_region_values_give_a_region_on_the_slide_or_one_line_error(values):
    width, height = 300, 200
    try:
        region = parse_region(values, width, height)
    except InputError as error:
        assert "\n" not in str(error)
        OUTCOMES[("parse_region", "one-line error")] += 1
        return
    OUTCOMES[("parse_region", "region")] += 1
    if region is not None:
        left, top, right, bottom = region.bounds
        assert all(math.isfinite(v) for v in region.bounds)
        assert left >= 0 and top >= 0 and right <= width and bottom <= height and region.area > 0


CLI_FLAGS = {"UDNetDetection": ("--detection_threshold", "--min_distance", "--min_fgnd_frac", "--input_mag",
                                 "--analysis_roi"),
             "FasterRCNNDetection": ("--min_probability", "--nms_threshold", "--max_detections", "--min_fgnd_frac",
                                     "--input_mag", "--analysis_roi")}
CLI_FUZZ = settings(FUZZ, max_examples=max(1, EXAMPLES // 8))  # each example runs a detector


@pytest.fixture(scope="module")
def small_slide(tmp_path_factory):
    """A 160 x 120 PNG of tissue-coloured noise with dark blobs (no magnification recorded)."""
    from PIL import Image

    rng = np.random.default_rng(3)
    rgb = rng.integers(150, 230, (120, 160, 3)).astype(np.uint8)
    for y, x in rng.integers(10, 110, (25, 2)):
        rgb[max(0, y - 4):y + 4, max(0, x - 4):x + 4] = (70, 40, 120)
    path = tmp_path_factory.mktemp("fuzz-slide") / "small.png"
    Image.fromarray(rgb).save(path)
    return path


def _flag_value(flag: str):
    """Plausible values most of the time, anything (NaN, huge, text) otherwise."""
    if flag == "--analysis_roi":
        return region_values.map(lambda v: ",".join(map(str, v)))
    return st.one_of(st.sampled_from(["-1", "0", "0.3", "0.5", "1", "5", "20", "40"]), st.floats(0, 1).map(str),
                     number.map(str), st.text(max_size=3))


def _flags(cli: str):
    return st.fixed_dictionaries({}, optional={flag: _flag_value(flag) for flag in CLI_FLAGS[cli]})


@pytest.mark.parametrize("cli", sorted(CLI_FLAGS))
def test_cli_parameters_give_nuclei_on_the_image_or_one_line_error_without_output(cli, small_slide,
                                                                                tmp_path_factory):
    """UD-Net's points and, at 40x on this 20x image, Faster R-CNN's boxes: on the image, or a one-line error."""
    import importlib

    main = importlib.import_module(f"plugins.{cli}").main

    @CLI_FUZZ
    @given(flags=_flags(cli))
    def check(flags):
        out = tmp_path_factory.mktemp("fuzz-out")
        argv = [str(small_slide), str(out / "nuclei.anot"), "--geojson", str(out / "nuclei.geojson"),
                *(["--input_mag", "20"] if "--input_mag" not in flags else []),
                *[f"{flag}={value}" for flag, value in flags.items()]]
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a CLI prints no numpy warning: it would be lines more
            try:
                code = main(argv)
            except SystemExit as exit_:  # argparse's errors
                code = exit_.code
        lines = [line for line in stderr.getvalue().splitlines() if "%|" not in line and line.strip()]
        if code != 0:
            assert code == 2 and len(lines) == 1 and lines[0].startswith(f"{cli}: error:"), (argv, lines)
            assert list(out.iterdir()) == [], argv
            OUTCOMES[(f"{cli} parameters", "one-line error")] += 1
            return
        document = nuclei_document(out / "nuclei.anot")  # strict JSON: a NaN or Infinity fails the read
        vertices = np.array([p[:2] for e in document["elements"] for p in e.get("points", [e.get("center")])],
                            float).reshape(-1, 2)
        assert ((vertices >= 0) & (vertices <= (160, 120))).all(), argv
        OUTCOMES[(f"{cli} parameters", "nuclei written")] += 1

    check()


outline = st.lists(st.tuples(st.one_of(st.floats(-20, 200), number), st.one_of(st.floats(-20, 150), number)),
                   min_size=0, max_size=6)


@FUZZ
@given(rings=st.lists(outline, max_size=6), scale=st.sampled_from([0.5, 1.0, 2.0, 4.0]))
def test_engine_outlines_are_written_on_the_slide_and_never_degenerate(rings, scale):
    from nuclei_core.engine.geometry import MIN_WIDTH_PIXELS, is_degenerate, well_formed
    from nuclei_core.nuclei import Nuclei

    contours = [np.array(ring, float).reshape(-1, 2) for ring in rings]
    with np.errstate(all="ignore"):  # huge coordinates overflow the mean: such centres are infinite, and removed
        centres = np.array([ring.mean(axis=0) if len(ring) else (0.0, 0.0) for ring in contours]).reshape(-1, 2)
        kept = well_formed(Nuclei(centres, np.ones(len(contours)), contours=contours), 160, 120, scale)
    for ring in kept.contours:
        assert np.isfinite(ring).all() and (ring >= 0).all() and (ring <= (160, 120)).all()
        assert not is_degenerate(ring, MIN_WIDTH_PIXELS / scale)
    assert ((kept.centroids >= 0) & (kept.centroids <= (160, 120))).all()
    OUTCOMES[("engine outlines", "nuclei written")] += len(kept)
    OUTCOMES[("engine outlines", "degenerate removed")] += len(contours) - len(kept)


TRAINING_FLAGS = ("--steps", "--batch-size", "--learning-rate", "--eval-every", "--max-minutes", "--stain-jitter",
                  "--radius", "--fit-minutes", "--loader-workers")


@FUZZ
@given(values=st.fixed_dictionaries({}, optional={flag: st.one_of(number.map(str), st.sampled_from(
    ["0", "1", "-1", "0.5", "inf", "-inf", "nan", "1e308"]), st.text(max_size=3)) for flag in TRAINING_FLAGS}),
       output=st.sampled_from(["w.pt", "w.txt", "w", "w.PT"]))
def test_training_arguments_are_finite_and_in_range_or_one_line_error(values, output, capsys):
    from nuclei_core.training.point_data import add_point_training_arguments
    from nuclei_core.training.run_arguments import training_parser

    parser = training_parser("A training script.")
    parser.prog = "train"
    add_point_training_arguments(parser, steps=10, batch_size=2, learning_rate=1e-3)
    try:
        args = parser.parse_args(["--output", output, *[f"{flag}={value}" for flag, value in values.items()]])
    except SystemExit as exit_:
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_.code == 2 and len(lines) == 1 and lines[0].startswith("train: error:"), lines
        OUTCOMES[("training arguments", "one-line error")] += 1
        return
    assert args.output.endswith(".pt") or args.output.endswith(".PT")
    assert args.steps >= 0 and args.batch_size >= 1 and args.eval_every >= 1 and args.loader_workers >= 0
    assert args.learning_rate > 0 and args.max_minutes > 0 and args.fit_minutes >= 0
    assert all(math.isfinite(v) for k, v in vars(args).items() if isinstance(v, float) and k != "max_minutes")
    OUTCOMES[("training arguments", "arguments taken")] += 1
