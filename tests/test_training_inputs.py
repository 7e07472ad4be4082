"""Bad input to the training scripts: one line naming the problem, exit code 2, and weights never overwritten."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nuclei_core.data.points import load_point_dataset
from nuclei_core.errors import InputError
from nuclei_core.outputs.readers import read_nuclei
from nuclei_core.models.udnet import DEFAULT_WEIGHTS
from nuclei_core.training import train_udnet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def point_folders(tmp_path):
    """images/ with three 96 x 96 PNGs and points/ with their x,y CSVs."""
    images, points = tmp_path / "images", tmp_path / "points"
    images.mkdir(), points.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(100, 220, (96, 96, 3)).astype(np.uint8)).save(images / f"t{i}.png")
        (points / f"t{i}.csv").write_text("x,y\n10,10\n50,40\n")
    return images, points


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("arguments,message", [
    (["--steps", "nan"], "argument --steps: invalid int value: 'nan'"),
    (["--steps", "-5"], "argument --steps: must be at least 0, not -5"),
    (["--learning-rate", "inf"], "--learning-rate=inf is not a finite number"),
    (["--learning-rate", "0"], "argument --learning-rate: must be more than 0, not 0"),
    (["--stain-jitter", "nan"], "--stain-jitter=nan is not a finite number"),
    (["--batch-size", "0"], "argument --batch-size: must be at least 1, not 0"),
    (["--max-minutes", "nan"], "--max-minutes=nan is not a finite number"),
    (["--dataset", "nope"], "argument --dataset: invalid choice: 'nope'"),
])
def test_bad_numbers_and_choices_are_one_line_errors(arguments, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_udnet.main(["--dataset", "crchisto", *arguments, "--output", str(tmp_path / "w.pt")])
    assert exit_.value.code == 2
    line = one_error_line(capsys)
    assert line.startswith(f"{Path(sys.argv[0]).name}: error:")  # argparse's program name, in process
    assert message in line and not (tmp_path / "w.pt").exists()


def test_a_list_of_numbers_with_nan_is_a_one_line_error(tmp_path, capsys):
    from nuclei_core.training import train_hovernet

    with pytest.raises(SystemExit) as exit_:
        train_hovernet.main(["--class-weights", "1", "nan", "1", "1", "1", "--output", str(tmp_path / "w.pt")])
    assert exit_.value.code == 2
    assert "--class-weights=1,nan,1,1,1 is not a finite number" in one_error_line(capsys)


def test_output_without_pt_or_that_is_the_starting_weights_is_refused_and_they_are_kept(tmp_path, capsys):
    start = tmp_path / "start.pt"
    shutil.copy(DEFAULT_WEIGHTS, start)
    digest = hashlib.sha256(start.read_bytes()).hexdigest()
    with pytest.raises(SystemExit):
        train_udnet.main(["--dataset", "crchisto", "--output", str(tmp_path / "w.txt")])
    assert "--output w.txt must end with .pt" in one_error_line(capsys)
    for flag in ("--output", "--checkpoint"):
        extra = [] if flag == "--output" else ["--output", str(tmp_path / "w.pt")]
        with pytest.raises(SystemExit):
            train_udnet.main(["--dataset", "crchisto", "--init-weights", str(start), *extra, flag, str(start)])
        assert f"{flag} {start} is the --init-weights file: an output never replaces an input" in one_error_line(capsys)
    assert hashlib.sha256(start.read_bytes()).hexdigest() == digest


def test_points_that_are_not_finite_numbers_or_off_their_image_are_refused(point_folders):
    images, points = point_folders
    (points / "t1.csv").write_text("x,y\n10,10\nnan,40\n")
    with pytest.raises(InputError, match=r"t1\.csv line 3: x and y must be finite numbers, not 'nan', '40'"):
        load_point_dataset(images, points)
    (points / "t1.csv").write_text("x,y\n10,10\n96.9,40\n")  # within a pixel of the edge: an annotator's click
    load_point_dataset(images, points)
    (points / "t1.csv").write_text("x,y\n10,10\n400,40\n")
    with pytest.raises(InputError, match=r"1 of 2 nuclei of t1\.csv lie outside the 96 x 96"):
        load_point_dataset(images, points)
    (points / "t1.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="t1.csv has no 'x' and 'y' columns"):
        load_point_dataset(images, points)


def test_a_missing_folder_or_an_image_that_is_not_one_is_refused(point_folders):
    images, points = point_folders
    with pytest.raises(InputError, match="folder not found"):
        load_point_dataset(images.parent / "nope", points)
    (images / "t2.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read the image t2.png"):
        load_point_dataset(images, points)


def test_the_script_reports_bad_data_in_one_line_from_the_command_line(point_folders, tmp_path):
    images, points = point_folders
    (points / "t0.csv").write_text("x,y\ninf,1\n")
    result = subprocess.run([sys.executable, "-m", "nuclei_core.training.train_udnet", "--images-dir", str(images),
                             "--points-dir", str(points), "--output", str(tmp_path / "w.pt")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and not (tmp_path / "w.pt").exists()
    assert result.stderr.strip() == ("train_udnet.py: error: t0.csv line 2: x and y must be finite numbers, "
                                     "not 'inf', '1'")


@pytest.mark.parametrize("delay", [0.15, 0.5, 1.5, 4.0])  # from 0.15 s: Python itself is set up
@pytest.mark.parametrize("module", ["nuclei_core.training.train_udnet", "nuclei_core.convert"])
def test_ctrl_c_at_any_moment_of_a_script_is_one_line(module, delay, point_folders, tmp_path):
    """SIGINT while the script imports torch, or while it trains (or converts): one line, exit code 130, nothing
    written (a conversion may also have finished first: then its whole output is there)."""
    import signal
    import time

    images, points = point_folders
    big = tmp_path / "big.geojson"  # long enough to convert that the signal can come during the conversion
    if module == "nuclei_core.convert":
        big.write_text('{"type": "FeatureCollection", "features": [' + ",".join(
            f'{{"type": "Feature", "geometry": {{"type": "Point", "coordinates": [{i % 900}, {i // 900}]}}}}'
            for i in range(300_000)) + "]}")
    arguments = {"nuclei_core.convert": [str(big), str(tmp_path / "out.anot")],
                 "nuclei_core.training.train_udnet": ["--images-dir", str(images), "--points-dir", str(points),
                                                      "--steps", "100000", "--eval-every", "100000",
                                                      "--batch-size", "1", "--patch-size", "64",
                                                      "--output", str(tmp_path / "w.pt")]}[module]
    process = subprocess.Popen([sys.executable, "-m", module, *arguments], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=120)[1]
    lines = [line for line in stderr.splitlines() if line.strip()]
    if module == "nuclei_core.convert" and lines[-1:] == [f"convert: wrote 300000 nuclei to {tmp_path / 'out.anot'}"]:
        # finished first (the signal then ends Python's exit, code 0 or -2): the whole output is there
        assert len(lines) == 1 and process.returncode in (0, -2)
        assert len(read_nuclei(tmp_path / "out.anot")) == 300_000
        return
    assert process.returncode == 130 and len(lines) == 1 and ": interrupted;" in lines[0], stderr
    assert not (tmp_path / "out.anot").exists() and not (tmp_path / "w.pt").exists()
