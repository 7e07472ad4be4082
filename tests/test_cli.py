"""The CLIs as the Digital Slide Archive runs them: ``python -m plugins ...`` in a subprocess.

Every subprocess pays ~3 s of CPU in imports (torch) and the test machine has 2 cores, so:
* the subprocess runs of this module are all started together, a few at a time, by one module fixture
  (``runs``); each test then checks its own run;
* the contract (``--list_cli``, ``--xml``, ``--help``, argparse errors), the happy path, the empty slide and
  one bad-input case per stage of failure (before any work, on loading the model, once it is loaded) run
  as subprocesses; the remaining parameter checks call ``plugins.__main__.main`` in this process: the same
  code, stdout/stderr captured at the file-descriptor level, the same exit code.
The detector only ever sees a 400 x 400 region or a small PNG. Never assert exact nucleus counts: the
shipped weights get replaced.
"""

from __future__ import annotations

import csv
import gzip
import datetime
import json
import logging
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nuclei_core.cli_spec import available_clis, spec_path, spec_text
from annotation_files import density_documents, nuclei_document

ROOT = Path(__file__).resolve().parents[1]
CLI_NAMES = available_clis()
SPECS = [spec_path(name) for name in CLI_NAMES]
CLI = "UDNetDetection"
ROI = (800, 800, 400, 400)  # tissue on CMU-1-Small-Region.svs (2220 x 2967, 20x)
ROI_ARGS = ["--analysis_roi", ",".join(map(str, ROI))]
PARALLEL = 3
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GZIP_MAGIC = b"\x1f\x8b"
REQUIRED_OPTIONAL = ("outputGeoJSONFile", "analysis_roi", "input_mag", "analysis_tile_size", "min_fgnd_frac",
                     "batch_size", "device", "scheduler", "num_workers", "girderApiUrl", "girderToken")


@dataclass
class Job:
    """One CLI invocation and what the test needs to know about its output folder."""

    args: list
    out: Path | None = None  # folder whose listing must not change when the run fails
    preexisting: dict[str, str] = field(default_factory=dict)  # files written there before the run


@dataclass
class Run:
    job: Job
    returncode: int
    stdout: str
    stderr: str
    listing_before: set[str]
    listing_after: set[str]

    def describe(self) -> str:
        return (f"args: {self.job.args}\nexit: {self.returncode}\nstdout:\n{self.stdout[-3000:]}\n"
                f"stderr:\n{self.stderr[-3000:]}")


def _listing(folder: Path | None) -> set[str]:
    return set(os.listdir(folder)) if folder is not None and folder.is_dir() else set()


def _execute(job: Job) -> Run:
    for name, content in job.preexisting.items():
        (job.out / name).write_text(content)
    before = _listing(job.out)
    env = {k: v for k, v in os.environ.items() if k != "NUCLEI_DEBUG"}  # tracebacks only on request
    done = subprocess.run([sys.executable, "-m", "plugins", *map(str, job.args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    return Run(job, done.returncode, done.stdout, done.stderr, before, _listing(job.out))


def _execute_in_process(job: Job, capfd) -> Run:
    """The same invocation through ``plugins.__main__.main`` in this process (for the cheap checks)."""
    from plugins.__main__ import main

    for name, content in job.preexisting.items():
        (job.out / name).write_text(content)
    before = _listing(job.out)
    capfd.readouterr()
    try:
        code = main([str(a) for a in job.args])
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capfd.readouterr()
    return Run(job, code, captured.out, captured.err, before, _listing(job.out))


def _run_all(jobs: dict[str, Job]) -> dict[str, Run]:
    # Submitted in the order given: the caller puts the longest run (the happy path) first.
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        futures = {name: pool.submit(_execute, job) for name, job in jobs.items()}
    return {name: future.result() for name, future in futures.items()}


def _run(runs: dict[str, Run], name: str) -> Run:
    if name not in runs:
        pytest.skip("the sample slide (shared/data/wsi/CMU-1-Small-Region.svs) is not available")
    return runs[name]


def _last_line(text: str) -> str:
    """The last line a terminal shows: tqdm ends its bar with carriage returns, not a newline."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(path)
    return path


def _tissue_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([200, 120, 170], dtype=np.float64)  # eosin pink
    return np.clip(base + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- runs


HAPPY_TOKEN = "SECRET-girder-token-5f1e"


@dataclass(frozen=True)
class BadCase:
    """A run that must fail cleanly: exit 2, one ``UDNetDetection: error:`` line naming ``keywords``.

    ``subprocess``: run by the ``runs`` fixture as the DSA would; else through ``main`` in this process.
    """

    keywords: tuple[str, ...]
    needs_svs: bool = True
    subprocess: bool = False


BAD_CASES = {
    "missing_input": BadCase(("not found", "missing.svs"), needs_svs=False, subprocess=True),
    "text_file_input": BadCase(("cannot read", "notes.txt"), needs_svs=False),
    "corrupt_slide": BadCase(("cannot read", "truncated.svs")),
    "png_without_magnification": BadCase(("input_mag", "magnification"), needs_svs=False),
    "roi_outside_slide": BadCase(("analysis_roi", "outside")),
    "batch_size_zero": BadCase(("batch_size",)),
    "min_fgnd_frac_above_one": BadCase(("min_fgnd_frac", "1.5")),
    "detection_threshold_two": BadCase(("detection_threshold",)),
    "detection_threshold_zero": BadCase(("detection_threshold",)),
    "tile_size_too_small": BadCase(("analysis_tile_size", "64")),
    "missing_weights": BadCase(("weights", "not found", "/nonexistent/w.pt")),
    "corrupt_weights": BadCase(("weights", "damaged.pt", "cannot be read"), subprocess=True),
    "cuda_without_gpu": BadCase(("cuda",)),
    "output_folder_missing": BadCase(("does not exist", "no_such_folder")),
    "output_is_directory": BadCase(("directory",)),
    "geojson_folder_missing": BadCase(("does not exist", "no_such_folder")),
    "unknown_scheduler": BadCase(("scheduler", "bogus"), subprocess=True),
}


def _bad_job(name: str, inp: Path, out: Path, svs: Path | None) -> Job:
    """The arguments of a bad-input case; every case asks for all three outputs in ``out``."""
    annotation, geojson, overlay = out / "nuclei.anot", out / "nuclei.geojson", out / "overlay.png"
    slide, extra, preexisting = svs, [], {}
    if name == "missing_input":
        slide = inp / "missing.svs"
    elif name == "text_file_input":
        slide = inp / "notes.txt"
        slide.write_text("nucleus counts\n1,2,3\n")
    elif name == "corrupt_slide":
        slide = inp / "truncated.svs"
        slide.write_bytes(svs.read_bytes()[:300_000])
    elif name == "png_without_magnification":
        slide = _write_png(inp / "tile.png", _tissue_like(256, 256))
    elif name == "roi_outside_slide":
        return Job([CLI, svs, annotation, "--geojson", geojson, "--overlay", overlay,
                    "--analysis_roi", "50000,50000,100,100"], out=out, preexisting={"nuclei.anot": "old"})
    elif name == "batch_size_zero":
        extra = ["--batch_size", "0"]
    elif name == "min_fgnd_frac_above_one":
        extra = ["--min_fgnd_frac", "1.5"]
    elif name == "detection_threshold_two":
        extra = ["--detection_threshold", "2"]
    elif name == "detection_threshold_zero":  # inside the XML range, rejected by the plugin itself
        extra = ["--detection_threshold", "0"]
    elif name == "tile_size_too_small":
        extra = ["--analysis_tile_size", "64"]
    elif name == "missing_weights":
        extra = ["--model_weights", "/nonexistent/w.pt"]
    elif name == "corrupt_weights":
        weights = inp / "damaged.pt"
        weights.write_bytes(np.random.default_rng(1).bytes(8192))
        extra = ["--model_weights", weights]
        preexisting = {"nuclei.anot": "old", "nuclei.geojson": "old geojson"}
    elif name == "cuda_without_gpu":
        extra = ["--device", "cuda"]
    elif name == "output_folder_missing":
        annotation = out / "no_such_folder" / "nuclei.anot"
    elif name == "output_is_directory":
        annotation.mkdir()
    elif name == "geojson_folder_missing":
        geojson = out / "no_such_folder" / "nuclei.geojson"
    elif name == "unknown_scheduler":  # fails only once the model is loaded: outputs must still be untouched
        extra = ["--scheduler", "bogus"]
        preexisting = {"nuclei.anot": "old", "nuclei.geojson": "old geojson", "overlay.png": "old png"}
    else:
        raise AssertionError(name)
    return Job([CLI, slide, annotation, "--geojson", geojson, "--overlay", overlay, *ROI_ARGS, *extra],
               out=out, preexisting=preexisting)


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory) -> dict[str, Run]:
    """Every subprocess run of this module (those on the sample slide only if it is present), in parallel."""
    try:
        svs = request.getfixturevalue("sample_svs")
        svs = svs if Path(svs).is_file() else None
    except pytest.skip.Exception:
        svs = None
    jobs: dict[str, Job] = {}
    if svs is not None:
        out = tmp_path_factory.mktemp("happy")
        jobs["happy"] = Job([CLI, svs, out / "nuclei.anot", "--geojson", out / "nuclei.geojson.gz",
                             "--overlay", out / "overlay.png", "--summary", out / "summary.csv",
                             "--nuclei_table", out / "nuclei.csv.gz", *ROI_ARGS, "--girder-token", HAPPY_TOKEN,
                             "--api-url", "http://dsa.invalid/api/v1"], out=out)
    out = tmp_path_factory.mktemp("blank")
    blank = _write_png(tmp_path_factory.mktemp("blank_in") / "white.png", np.full((600, 600, 3), 255, np.uint8))
    jobs["no_tissue"] = Job([CLI, blank, out / "nuclei.anot", "--geojson", out / "nuclei.geojson",
                             "--input_mag", "20"], out=out)
    for name, case in BAD_CASES.items():
        if not case.subprocess or (case.needs_svs and svs is None):
            continue
        jobs[name] = _bad_job(name, tmp_path_factory.mktemp(f"{name}_in"), tmp_path_factory.mktemp(f"{name}_out"),
                              svs)
    folder = tmp_path_factory.mktemp("contract")
    jobs["missing_positional"] = Job([CLI, folder / "in.svs", *ROI_ARGS], out=folder)
    jobs["list_cli"] = Job(["--list_cli"])
    for name in CLI_NAMES:
        jobs[f"xml:{name}"] = Job([name, "--xml"])
        jobs[f"help:{name}"] = Job([name, "--help"])
    return _run_all(jobs)


# ----------------------------------------------------------------------------------- the contract


def test_list_cli_lists_every_xml_spec_as_python(runs):
    run = runs["list_cli"]
    assert run.returncode == 0, run.describe()
    listed = json.loads(run.stdout)
    assert listed == {name: {"type": "python"} for name in CLI_NAMES}
    assert CLI in listed
    for name in listed:
        assert (ROOT / "plugins" / f"{name}.py").is_file(), f"{name} has an XML spec but no plugins/{name}.py"


@pytest.mark.parametrize("name", CLI_NAMES)
def test_xml_flag_prints_the_spec(runs, name):
    run = runs[f"xml:{name}"]
    assert run.returncode == 0, run.describe()
    printed = ET.canonicalize(run.stdout, strip_text=True)
    on_disk = ET.canonicalize(spec_text(name), strip_text=True)
    assert printed == on_disk
    assert ET.fromstring(run.stdout.strip().encode()).tag == "executable"


@pytest.mark.parametrize("name", CLI_NAMES)
@pytest.mark.parametrize("flag", ["--xml", "--help"])
def test_xml_and_help_print_what_the_cli_itself_prints(name, flag, capsys):
    """``python -m plugins NAME --xml`` (asked of every CLI when the DSA registers the image) and ``--help`` answer
    before the CLI's module is imported, byte for byte as the CLI's own parser does."""
    import importlib

    from plugins.__main__ import main as dispatch

    with pytest.raises(SystemExit) as exit_info:
        dispatch([name, flag])
    assert exit_info.value.code in (0, None)
    early = capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(f"plugins.{name}").main([flag])
    assert exit_info.value.code in (0, None)
    assert capsys.readouterr().out == early and early.startswith("<?xml" if flag == "--xml" else f"usage: {name}")


def test_xml_is_answered_without_loading_torch():
    code = ("import sys\nfrom plugins.__main__ import main\ntry:\n    main(['HoVerNetSegmentation', '--xml'])\n"
            "except SystemExit:\n    pass\nprint(sorted({'torch', 'large_image'} & set(sys.modules)), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("<?xml") and result.stderr.strip() == "[]"


def test_a_cli_may_give_a_parameter_of_a_shared_group_its_own_default(tmp_path, monkeypatch):
    def default_of(name: str, parameter: str) -> str:
        return ET.fromstring(spec_text(name)).find(f".//*[name='{parameter}']").findtext("default")

    assert default_of("UDNetDetection", "analysis_tile_size") == "512"  # its own
    assert default_of("R2UNetSegmentation", "analysis_tile_size") == "1024"  # the group's
    import nuclei_core.cli_spec as cli_spec

    (tmp_path / "shared").symlink_to(cli_spec.SHARED_DIR)
    (tmp_path / "Odd.xml").write_text('<executable><parameters include="compute">'
                                      '<default name="tile_side">64</default></parameters></executable>')
    monkeypatch.setattr(cli_spec, "SPEC_DIR", tmp_path)
    monkeypatch.setattr(cli_spec, "SHARED_DIR", tmp_path / "shared")
    with pytest.raises(ValueError, match="Odd.xml: the group 'compute' has no parameter 'tile_side'"):
        spec_text("Odd")


@pytest.mark.parametrize("spec", SPECS, ids=CLI_NAMES)
def test_spec_parses_with_ctk_cli_and_slicer_cli_web_without_warnings(spec, caplog):
    import ctk_cli
    import slicer_cli_web
    from slicer_cli_web import cli_utils

    with caplog.at_level(logging.WARNING, logger="ctk_cli"):
        module = ctk_cli.CLIModule(str(spec))
        parser = slicer_cli_web.CLIArgumentParser(str(spec))
        index_params, opt_params, simple_out = cli_utils.get_cli_parameters(cli_utils.as_model(spec.read_bytes()))
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("ctk_cli")]
    assert warnings == [], warnings
    assert module.title and module.description and module.version and module.category
    assert [p.name for p in index_params] == ["inputImageFile", "outputNucleiAnnotationFile"]
    assert {p.name for p in opt_params} >= set(REQUIRED_OPTIONAL)
    assert simple_out == []  # no simple return parameters, hence no --returnparameterfile
    args = parser.parse_args(["slide.svs", "out.anot"])
    assert args.inputImageFile == "slide.svs" and args.outputNucleiAnnotationFile == "out.anot"
    assert args.analysis_roi == [-1.0, -1.0, -1.0, -1.0]


@pytest.mark.parametrize("spec", SPECS, ids=CLI_NAMES)
def test_spec_has_the_parameters_the_dsa_needs(spec):
    import slicer_cli_web  # noqa: F401  (its adjustments to ctk_cli, as in the DSA)
    import ctk_cli

    module = ctk_cli.CLIModule(str(spec))
    params = {p.name: p for p in module.parameters()}
    slide = params["inputImageFile"]
    assert (slide.typ, slide.index, slide.channel) == ("image", 0, "input")
    annotation = params["outputNucleiAnnotationFile"]
    assert (annotation.typ, annotation.index, annotation.channel) == ("file", 1, "output")
    assert annotation.reference == "inputImageFile"
    assert annotation.name.endswith("AnnotationFile")
    outputs_with_index = [p.name for p in params.values() if p.channel == "output" and p.index is not None]
    assert all(n.endswith("AnnotationFile") for n in outputs_with_index)
    for name in REQUIRED_OPTIONAL:
        assert name in params, f"{spec.name} lacks {name}"
        assert params[name].index is None and params[name].longflag, f"{name} must be an optional flag"
    assert params["outputGeoJSONFile"].channel == "output"
    assert params["analysis_roi"].typ == "region"
    assert params["analysis_roi"].default == [-1.0, -1.0, -1.0, -1.0]
    assert params["device"].elements == ["auto", "cpu", "cuda"]
    assert params["girderApiUrl"].longflag == "--api-url"
    assert params["girderToken"].longflag == "--girder-token"
    indices = sorted(p.index for p in params.values() if p.index is not None)
    assert indices == list(range(len(indices)))
    for group in module:
        assert group.label and group.label.strip(), f"a parameter group of {spec.name} has no label"
        assert group.description and group.description.strip(), f"group {group.label} has no description"
    for param in params.values():
        assert param.label and param.label.strip(), f"{param.name} has no label"
        assert param.description and param.description.strip(), f"{param.name} has no description"
        if param.constraints is not None and param.default not in (None, ""):
            low, high = float(param.constraints.minimum), float(param.constraints.maximum)
            assert low <= param.default <= high, f"default of {param.name} outside its constraints"


@pytest.mark.parametrize("name", CLI_NAMES)
def test_help_exits_zero_and_names_every_flag(runs, name):
    import slicer_cli_web  # noqa: F401
    import ctk_cli

    run = runs[f"help:{name}"]
    assert run.returncode == 0, run.describe()
    assert "Traceback" not in run.stderr
    for param in ctk_cli.CLIModule(str(spec_path(name))).parameters():
        shown = param.longflag or param.flag or param.name
        assert re.search(rf"(?<![\w-]){re.escape(shown)}(?![\w-])", run.stdout), f"--help does not mention {shown}"
    assert run.stdout.startswith(f"usage: {name} "), run.stdout[:200]


def test_missing_positional_argument_is_an_argparse_error(runs):
    run = runs["missing_positional"]
    assert run.returncode == 2, run.describe()
    assert "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1, run.stderr  # one line, without argparse's usage block
    last = _last_line(run.stderr)
    assert last.startswith(f"{CLI}: error:"), last
    assert "required" in last and "outputNucleiAnnotationFile" in last
    assert run.stdout == ""
    assert run.listing_after == run.listing_before


@pytest.mark.parametrize("argv, problem", [(["NoSuchCLI", "in.svs", "out.anot"], "unknown CLI 'NoSuchCLI'"),
                                           ([], "no CLI named")])
def test_entrypoint_without_a_known_cli_is_a_one_line_error(argv, problem, capfd):
    from plugins.__main__ import main

    assert main(argv) == 2
    captured = capfd.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"python -m plugins: error: {problem}; choose one of ")
    assert "UDNetDetection" in captured.err and "--list_cli" in captured.err


def test_entrypoint_help_lists_the_contract_and_every_cli(capsys):
    from plugins.__main__ import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--list_cli" in out and "<CLI> --xml" in out
    assert all(name in out for name in available_clis())


# ---------------------------------------------------------------------------------- happy path


@pytest.fixture(scope="module")
def happy(runs):
    run = _run(runs, "happy")
    assert run.returncode == 0, run.describe()
    return run


def _annotation(run: Run) -> dict:
    return nuclei_document(run.job.out / "nuclei.anot")


def test_happy_path_writes_a_large_image_annotation_of_points_in_the_roi(happy):
    document = _annotation(happy)
    assert isinstance(document["name"], str) and document["name"].strip()
    elements = document["elements"]
    # The CRCHisto-trained weights under-detect on this skin slide (domain shift, see the model card);
    # detection accuracy through this same CLI is checked on CRCHisto in test_cli_detects_crchisto_nuclei.
    assert len(elements) > 5, f"only {len(elements)} nuclei in a 400 x 400 region of tissue"
    assert len(elements) < 2000  # a 400 x 400 px region at 20x holds a few hundred nuclei at most
    left, top, width, height = ROI
    centres = []
    for element in elements:
        assert element["type"] == "point"
        x, y, z = element["center"]
        assert z == 0
        assert left <= x <= left + width and top <= y <= top + height, f"{(x, y)} outside the ROI"
        assert isinstance(element["group"], str) and element["group"]
        assert re.fullmatch(r"rgba?\(\d+, ?\d+, ?\d+(, ?[\d.]+)?\)", element["lineColor"]), element["lineColor"]
        centres.append((x, y))
    assert len(set(centres)) == len(centres), "a nucleus is reported twice"
    attributes = document["attributes"]
    assert attributes["model"] == "UD-Net"
    assert isinstance(attributes["weights_version"], str) and attributes["weights_version"]
    parameters = attributes["parameters"]
    assert parameters["analysis_roi"] == list(map(float, ROI))
    assert {"batch_size", "analysis_tile_size", "min_fgnd_frac", "device"} <= set(parameters)
    assert "girderToken" not in parameters and "girderApiUrl" not in parameters
    # Reruns on one slide are told apart: the name carries the run's time, the description what was changed.
    created = datetime.datetime.fromisoformat(attributes["created"])
    assert document["name"] == f"UD-Net nuclei, {created:%Y-%m-%d %H:%M:%S} UTC"
    assert attributes["changed_parameters"] == {"analysis_roi": list(map(float, ROI))}  # the rest: defaults
    density = attributes["summary"]["per_mm2_tissue"]
    assert document["description"] == (f"{len(elements)} nuclei; {density:g} per mm² of tissue; UD-Net; "
                                        "settings: analysis_roi=" + ",".join(map(str, ROI)))
    raw = (happy.job.out / "nuclei.anot").read_text()
    assert HAPPY_TOKEN not in raw, "the Girder token was written into the annotation"
    summary = re.search(rf"^{CLI}: (\d+) nuclei", _last_line(happy.stderr))
    assert summary and int(summary.group(1)) == len(elements), _last_line(happy.stderr)


def test_happy_path_geojson_is_gzip_and_matches_the_annotation(happy):
    path = happy.job.out / "nuclei.geojson.gz"
    assert path.read_bytes()[:2] == GZIP_MAGIC
    with gzip.open(path, "rt") as handle:
        collection = json.load(handle)
    assert collection["type"] == "FeatureCollection"
    elements = _annotation(happy)["elements"]
    features = collection["features"]
    assert len(features) == len(elements)
    for feature in features:
        assert feature["type"] == "Feature"
        assert feature["properties"]["objectType"] == "detection"
        assert feature["geometry"]["type"] == "Point"
    assert sorted(tuple(f["geometry"]["coordinates"]) for f in features) == \
        sorted(tuple(e["center"][:2]) for e in elements)


def test_happy_path_summary_table_and_density_map_agree_with_the_nuclei(happy):
    document = _annotation(happy)
    centres = sorted(tuple(e["center"][:2]) for e in document["elements"])
    summary = document["attributes"]["summary"]
    assert summary["nuclei"] == len(centres) > 0 and summary["classes"]["nucleus"]["nuclei"] == len(centres)
    assert 0 < summary["tissue_mm2"] <= summary["analysed_mm2"] <= (400 * 0.499 / 1000) ** 2 * 1.01  # the ROI
    assert summary["per_mm2_tissue"] == pytest.approx(len(centres) / summary["tissue_mm2"], rel=1e-3)
    with open(happy.job.out / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["scope"], r["class"], int(r["nuclei"])) for r in rows] == [
        ("slide", "all", len(centres)), ("slide", "nucleus", len(centres))]
    with gzip.open(happy.job.out / "nuclei.csv.gz", "rt", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert sorted((float(r["x"]), float(r["y"])) for r in table) == centres
    (density,) = density_documents(happy.job.out / "nuclei.anot")
    (grid,) = density["elements"]
    assert grid["type"] == "griddata" and grid["interpretation"] == "heatmap"  # what HistomicsUI draws
    assert density["display"] == {"visible": False}  # listed, shown when the pathologist turns it on
    values = np.array(grid["values"]).reshape(-1, grid["gridWidth"])
    cell = grid["dx"]
    origin = np.array(grid["origin"][:2]) - cell / 2  # the first spot sits at the first cell's centre
    assert cell == pytest.approx(100 / 0.499, rel=1e-3)  # the default 100 µm grid on this 0.499 µm/px slide
    with_nuclei = {tuple(((np.array(c) - origin) // cell).astype(int)) for c in centres}
    shown = {(column, row) for row, column in zip(*np.nonzero(values))}
    assert shown and shown <= with_nuclei  # a density only where there are nuclei, in the nuclei's cells


def test_happy_path_overlay_is_a_png_of_the_region(happy):
    path = happy.job.out / "overlay.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width == image.height, "the overlay should show the square ROI, not the whole slide"
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 5, "the overlay is blank"


def test_happy_path_leaves_only_the_requested_outputs(happy):
    assert happy.listing_before == set()
    assert happy.listing_after == {"nuclei.anot", "nuclei.geojson.gz", "overlay.png", "summary.csv", "nuclei.csv.gz"}
    for name in happy.listing_after:
        assert (happy.job.out / name).stat().st_mode & 0o044 == 0o044, f"{name} is not readable by others"


def test_progress_for_slicer_cli_web_on_stdout_and_the_bar_on_stderr(happy):
    lines = [line.strip() for line in happy.stdout.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("<filter-start>")]
    ends = [i for i, line in enumerate(lines) if line.startswith("<filter-end>")]
    progress = [(i, float(re.fullmatch(r"<filter-progress>([\d.]+)</filter-progress>", line).group(1)))
                for i, line in enumerate(lines) if line.startswith("<filter-progress>")]
    assert len(starts) == 1 and len(ends) == 1, happy.stdout
    assert progress, "no <filter-progress> line"
    assert starts[0] < progress[0][0] and progress[-1][0] < ends[0]
    values = [v for _, v in progress]
    assert values == sorted(values) and all(0 <= v <= 1 for v in values) and values[-1] == 1.0
    assert "</filter-start>" in lines[starts[0]] and "</filter-end>" in lines[ends[0]]
    assert "%|" not in happy.stdout and "\r" not in happy.stdout, "the tqdm bar went to stdout"
    assert "%|" in happy.stderr, "no tqdm bar on stderr"
    assert "Traceback" not in happy.stderr


# ------------------------------------------------------------------------------------ no tissue


def test_slide_without_tissue_gives_an_empty_annotation(runs):
    run = runs["no_tissue"]
    assert run.returncode == 0, run.describe()
    assert re.search(r"no tissue", run.stderr, re.IGNORECASE), run.stderr
    assert "Traceback" not in run.stderr
    document = nuclei_document(run.job.out / "nuclei.anot")
    assert document["elements"] == []
    assert document["name"] and document["attributes"]["model"] == "UD-Net"
    collection = json.loads((run.job.out / "nuclei.geojson").read_text())
    assert collection == {"type": "FeatureCollection", "features": []}
    assert run.listing_after == {"nuclei.anot", "nuclei.geojson"}


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow, probing the truncated SVS in this process
@pytest.mark.parametrize("name", list(BAD_CASES))
def test_bad_input_fails_with_one_line_and_writes_nothing(request, runs, tmp_path, capfd, name):
    if name == "cuda_without_gpu":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA GPU")
    case = BAD_CASES[name]
    if case.subprocess:
        run = _run(runs, name)
    else:
        svs = request.getfixturevalue("sample_svs") if case.needs_svs else None
        (tmp_path / "in").mkdir()
        (tmp_path / "out").mkdir()
        run = _execute_in_process(_bad_job(name, tmp_path / "in", tmp_path / "out", svs), capfd)
    assert run.returncode == 2, run.describe()
    assert "Traceback" not in run.stderr, run.describe()
    last = _last_line(run.stderr)
    assert last.startswith(f"{CLI}: error: "), run.describe()
    for keyword in BAD_CASES[name].keywords:
        assert keyword.lower() in last.lower(), f"{keyword!r} not in {last!r}"
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, f"the error should be one line, not several:\n{run.stderr}"
    assert run.listing_after == run.listing_before, \
        f"the failed run left {run.listing_after - run.listing_before} in the output folder"
    assert not any(n.endswith(".part") for n in run.listing_after)
    for file_name, content in run.job.preexisting.items():
        assert (run.job.out / file_name).read_text() == content, f"the failed run replaced {file_name}"


def test_cli_detects_crchisto_nuclei(crchisto, tmp_path):
    """End to end through the CLI on an unseen CRCHisto test image (a JPEG, so --input_mag is needed)."""
    from nuclei_core.data.points import read_points_csv
    from nuclei_core.metrics import detection_scores

    out = tmp_path / "img.anot"
    result = subprocess.run([sys.executable, "-m", "plugins", "UDNetDetection", str(crchisto / "images/img10.jpg"),
                             str(out), "--input_mag", "20", "--min_fgnd_frac", "0"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    found = np.array([e["center"][:2] for e in nuclei_document(out)["elements"]])
    scores = detection_scores(found, read_points_csv(crchisto / "detection/img10.csv"), 6)
    assert scores.f1 > 0.75, scores.as_dict()


MODEL_CLIS_AND_WEIGHTS = {"UDNetDetection": "r2unet_nuclei.pt", "R2UNetSegmentation": "udnet_crchisto.pt",
                          "DCRNClassification": "udnet_crchisto.pt", "CascadeGCNDetection": "dcrn_crchisto.pt",
                          "HoVerNetSegmentation": "udnet_crchisto.pt", "GraphAttentionSegmentation": "r2unet_nuclei.pt"}


@pytest.mark.parametrize("name", list(MODEL_CLIS_AND_WEIGHTS))
def test_weights_of_another_architecture_are_a_one_line_error(name, tmp_path, capfd):
    from plugins.__main__ import main as entry

    slide = tmp_path / "tile.png"
    Image.fromarray(_tissue_like(128, 128)).save(slide)
    weights = ROOT / "nuclei_core" / "models" / "weights" / MODEL_CLIS_AND_WEIGHTS[name]
    code = entry([name, str(slide), str(tmp_path / "out.anot"), "--input_mag", "20", "--model_weights", str(weights)])
    err = capfd.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert _last_line(err).startswith(f"{name}: error: weights do not fit"), err
    assert not (tmp_path / "out.anot").exists()
