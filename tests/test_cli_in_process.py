"""A CLI run inside another (the Girder runner, EvaluateNuclei's methods): its error is the caller's one line, its
progress passes through, and bad options are refused before anything runs."""

from __future__ import annotations

import io

import numpy as np

from nuclei_core.cli_in_process import HeldErrorLine, argument_problem
from plugins.__main__ import main as plugins_main


def test_the_error_line_is_held_and_everything_else_passes_through():
    target = io.StringIO()
    held = HeldErrorLine(target, "UDNetDetection")
    held.write("UD-Net:  50%|#####     | 1/2\r")
    print("UDNetDetection: error: min_fgnd_frac=nan is not a finite number", file=held)  # two writes
    held.write("UDNetDetection: 12 nuclei in 1 of 1 tiles, 0.1 s\n")
    assert held.message == "min_fgnd_frac=nan is not a finite number"
    assert target.getvalue() == "UD-Net:  50%|#####     | 1/2\rUDNetDetection: 12 nuclei in 1 of 1 tiles, 0.1 s\n"
    held.write("UDNetDetection: unexpected error: ValueError: x (set NUCLEI_DEBUG=1 for details)\n")
    assert held.message == "unexpected error: ValueError: x (set NUCLEI_DEBUG=1 for details)"


def test_argument_problems_are_found_without_running_anything():
    assert argument_problem("UDNetDetection", ["--min_distance", "3"]) is None
    assert argument_problem("UDNetDetection", ["--min_fgnd_frac", "nan"]) == "min_fgnd_frac=nan is not a finite number"
    assert "unrecognized arguments: --nope" in argument_problem("UDNetDetection", ["--nope"])


def _evaluate(slide, tmp_path, options: str) -> list[str]:
    truth = tmp_path / "truth.anot"
    truth.write_text('{"name": "t", "elements": [{"type": "point", "center": [20, 20, 0]}]}')
    return ["EvaluateNuclei", str(slide), str(tmp_path / "agreement.anot"), "--input_mag", "20",
            "--truth_annotation", str(truth), "--method", "UDNetDetection", "--method_options", options,
            "--metrics", str(tmp_path / "metrics.json")]


def test_a_method_failing_inside_evaluate_nuclei_is_one_line(tmp_png_slide, tmp_path, capsys):
    slide = tmp_png_slide(np.random.default_rng(0).integers(90, 200, (64, 64, 3)))
    assert plugins_main(_evaluate(slide, tmp_path, f"--model_weights {tmp_path / 'missing.pt'}")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == (f"EvaluateNuclei: error: the method UDNetDetection(--model_weights {tmp_path / 'missing.pt'}) "
                         f"failed: model weights not found: {tmp_path / 'missing.pt'}; nothing was written")
    assert not [line for line in lines if "error" in line][:-1]  # the method's own error line is not repeated
    assert not (tmp_path / "metrics.json").exists()


def test_bad_method_options_are_refused_before_any_method_runs(tmp_png_slide, tmp_path, capsys):
    slide = tmp_png_slide(np.random.default_rng(0).integers(90, 200, (64, 64, 3)))
    assert plugins_main(_evaluate(slide, tmp_path, "--min_fgnd_frac nan")) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("EvaluateNuclei: error: the options of UDNetDetection(--min_fgnd_frac nan) are refused: "
                           "min_fgnd_frac=nan is not a finite number")
