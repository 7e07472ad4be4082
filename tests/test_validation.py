"""The validation every CLI runs before it reads or writes anything (nuclei_core/validation.py).

Hostile or mistaken parameters: numbers that are not finite, outputs without their spec's extension, an
output that is an input (by path, hard link or symbolic link). Each is one line, exit code 2, no output,
and the input untouched.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

from nuclei_core.cli_spec import available_clis, cli_parameters

FLOAT_TYPES = {"float", "double"}


def _float_parameters() -> list[tuple[str, str]]:
    """(CLI, --flag) of every float parameter of every CLI's spec."""
    return [(cli, parameter.longflag) for cli in available_clis() for parameter in cli_parameters(cli)
            if parameter.typ in FLOAT_TYPES and parameter.longflag]


def _run(cli: str, argv: list[str], capfd) -> tuple[int, str]:
    """Run the CLI in this process: its exit code and its stderr."""
    code = importlib.import_module(f"plugins.{cli}").main([str(a) for a in argv])
    return code, capfd.readouterr().err


def _assert_one_line_error(cli: str, code: int, stderr: str, *words: str) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"{cli}: error:"), stderr
    assert all(word in lines[0] for word in words), lines[0]


@pytest.fixture
def slide(tmp_png_slide):
    rng = np.random.default_rng(0)
    return tmp_png_slide(rng.integers(80, 220, (64, 64, 3)), name="slide.png")


@pytest.mark.parametrize("cli,flag", _float_parameters())
@pytest.mark.parametrize("number", ["nan", "inf", "-inf"])
def test_every_float_parameter_refuses_a_number_that_is_not_finite(cli, flag, number, slide, tmp_path, capfd):
    output = tmp_path / "nuclei.anot"
    code, stderr = _run(cli, [slide, output, f"--{flag.lstrip('-')}={number}"], capfd)
    _assert_one_line_error(cli, code, stderr, flag.lstrip("-"), "not a finite number")
    assert not output.exists()


@pytest.mark.parametrize("region", ["nan,0,10,10", "0,0,inf,10", "0,0,10,-inf"])
def test_region_with_a_number_that_is_not_finite_is_refused(region, slide, tmp_path, capfd):
    output = tmp_path / "nuclei.anot"
    code, stderr = _run("UDNetDetection", [slide, output, f"--analysis_roi={region}"], capfd)
    _assert_one_line_error("UDNetDetection", code, stderr, "analysis_roi", "not a finite number")
    assert not output.exists()


def test_slide_given_as_the_annotation_output_is_refused_and_kept(slide, capfd):
    before = slide.read_bytes()
    code, stderr = _run("UDNetDetection", [slide, slide], capfd)
    _assert_one_line_error("UDNetDetection", code, stderr, "must end with .anot or .json")
    assert slide.read_bytes() == before


@pytest.mark.parametrize("flag,name", [("--geojson", "nuclei.txt"), ("--overlay", "overlay.jpg")])
def test_output_without_its_extension_is_refused(flag, name, slide, tmp_path, capfd):
    code, stderr = _run("UDNetDetection", [slide, tmp_path / "nuclei.anot", flag, tmp_path / name], capfd)
    _assert_one_line_error("UDNetDetection", code, stderr, name, "must end with")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slide.png"]


@pytest.mark.parametrize("annotation,geojson", [("nuclei.anot", None), ("nuclei.json", None), ("nuclei.ANOT", None),
                                                ("nuclei.anot", "nuclei.geojson"), ("nuclei.anot", "nuclei.geojson.gz")])
def test_outputs_with_an_accepted_extension_pass_validation(annotation, geojson, slide, tmp_path):
    from nuclei_core.cli_spec import cli_parser
    from nuclei_core.validation import check_parameters

    extra = ["--geojson", str(tmp_path / geojson)] if geojson else []
    args = cli_parser("UDNetDetection").parse_args([str(slide), str(tmp_path / annotation), *extra])
    check_parameters("UDNetDetection", args)  # raises InputError if refused


@pytest.mark.parametrize("link", ["same path", "hard link", "symbolic link"])
def test_output_that_is_an_input_is_refused_and_the_input_kept(link, slide, tmp_path, capfd):
    overlay = {"same path": lambda: slide,
               "hard link": lambda: (os.link(slide, tmp_path / "overlay.png"), tmp_path / "overlay.png")[1],
               "symbolic link": lambda: (os.symlink(slide, tmp_path / "view.png"), tmp_path / "view.png")[1]}[link]()
    before = slide.read_bytes()
    code, stderr = _run("UDNetDetection", [slide, tmp_path / "nuclei.anot", "--overlay", overlay], capfd)
    _assert_one_line_error("UDNetDetection", code, stderr, "an output never replaces an input", "inputImageFile")
    assert slide.read_bytes() == before and not (tmp_path / "nuclei.anot").exists()


def test_classifier_output_that_is_its_input_annotation_is_refused(slide, tmp_path, capfd):
    given = tmp_path / "nuclei.anot"
    given.write_text('{"name": "given", "elements": [{"type": "point", "center": [10, 10, 0]}]}')
    before = given.read_text()
    code, stderr = _run("DCRNClassification", [slide, given, "--nuclei_annotation", given], capfd)
    _assert_one_line_error("DCRNClassification", code, stderr, "inputNucleiAnnotationFile")
    assert given.read_text() == before


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5, 0.8, 1.5, 3.0])
def test_ctrl_c_at_any_moment_is_one_line_and_leaves_no_output(delay, sample_svs, tmp_path):
    """SIGINT while Python imports torch and large_image, or while the CLI runs: one line, exit 130."""
    import signal
    import subprocess
    import sys
    import time

    output = tmp_path / "nuclei.anot"
    process = subprocess.Popen([sys.executable, "-m", "plugins", "UDNetDetection", str(sample_svs), str(output)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=120)[1]
    lines = [line for line in stderr.splitlines() if line.strip() and "%|" not in line]
    assert process.returncode == 130 and len(lines) == 1 and "interrupted; no output written" in lines[0], stderr
    assert not output.exists() and list(tmp_path.iterdir()) == []
