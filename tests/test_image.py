"""The plugin image, built for real and run as the DSA runs it.

The lint and the self-check run on the host. Everything marked ``container`` builds ``docker/Dockerfile``
from ``git archive HEAD`` with a real engine (podman here, set up by scripts/setup-machine.sh) and runs the
image: slicer_cli_web's registration calls (``--list_cli``, every ``--xml``), large_image's tile sources,
a CLI on a read-only mounted slide as the DSA's worker runs it (compared with the same run on the host), and
bad input. Without an engine they are skipped with the reason in one line.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nuclei_core.cli_spec import available_clis, spec_text
from nuclei_core.outputs.readers import read_annotation, read_geojson

ROOT = Path(__file__).resolve().parents[1]
# Bytes as the engine reports them: today's size (4.97 GB) plus a little, so that growth is caught. The issue's
# goal of 4.5 GB is not met yet: docker/README.md says why.
IMAGE_SIZE_CEILING = 5.0e9
REGION = "800,800,700,600"  # DSA region syntax: left,top,width,height in base pixels of the sample slide
IN, OUT = "/data/in", "/data/out"  # where the DSA's worker mounts inputs (read-only) and outputs


def test_dockerfile_passes_hadolint_at_warning_threshold():
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), "--failure-threshold", "warning", "docker/Dockerfile"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_self_check_lists_every_cli():
    result = subprocess.run([sys.executable, "docker/selfcheck.py"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"self-check passed: {', '.join(available_clis())}"


def test_image_installs_the_same_requirements_as_the_readme_commands():
    dockerfile = (ROOT / "docker/Dockerfile").read_text()
    install = (ROOT / "scripts/install.sh").read_text()
    for needle in ("-r requirements.txt", "histomicstk==1.4.0", "--override overrides.txt"):
        assert needle in dockerfile and needle in install


# ---------------------------------------------------------------------------- the built image


@pytest.fixture(scope="module")
def mounted_slide(sample_svs) -> tuple[tuple[Path, str, str], str]:
    """The sample slide's folder mounted read-only, and the slide's path inside the container."""
    return (sample_svs.parent, IN, "ro"), f"{IN}/{sample_svs.name}"


def _writable_output_folder(tmp_path: Path) -> Path:
    """A host folder the container's user (uid 1000) can write to, as the worker's output mount is."""
    folder = tmp_path / "out"
    folder.mkdir()
    folder.chmod(0o777)
    return folder


def _one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.container
def test_image_stays_under_its_size_ceiling_and_carries_the_dsa_contract(engine, image):
    assert engine.image_size(image) <= IMAGE_SIZE_CEILING
    config = json.loads(engine.call(["image", "inspect", "--format", "{{json .Config}}", image]).stdout)
    assert config["Labels"]["com.nvidia.volumes.needed"] == "nvidia_driver"
    assert config["User"] == "1000"
    assert config["Entrypoint"] == ["python", "-m", "plugins"]
    environment = dict(item.split("=", 1) for item in config["Env"])
    assert environment["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert environment["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"


@pytest.mark.container
def test_slicer_cli_web_reads_every_cli_from_the_container(engine, image):
    import ctk_cli

    listed = engine.run(image, ["--list_cli"])
    assert listed.returncode == 0, listed.stderr
    names = list(json.loads(listed.stdout))
    assert names == available_clis()
    for name in names:
        spec = engine.run(image, [name, "--xml"])
        assert spec.returncode == 0, spec.stderr
        assert spec.stdout.strip() == spec_text(name).strip()
        module = ctk_cli.CLIModule(stream=io.StringIO(spec.stdout))
        assert module.title and any(parameter.name == "inputImageFile" for parameter in module.parameters())


@pytest.mark.container
def test_large_image_reads_images_with_each_tile_source_in_the_container(engine, image, mounted_slide,
                                                                         tmp_png_slide):
    mount, slide = mounted_slide
    png = tmp_png_slide(np.full((48, 64, 3), 200))
    png.parent.chmod(0o755)  # pytest's folders are private to root; the container's user is uid 1000
    script = ("import sys, large_image_source_openslide as o, large_image_source_tiff as t, "
              "large_image_source_pil as p\n"
              "for source, path in ((o, sys.argv[1]), (t, sys.argv[1]), (p, sys.argv[2])):\n"
              "    print(source.__name__, source.open(path).getMetadata()['sizeX'])\n")
    run = engine.run(image, ["-c", script, slide, f"/data/png/{png.name}"],
                     mounts=(mount, (png.parent, "/data/png", "ro")), options=("--entrypoint", "python"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["large_image_source_openslide 2220", "large_image_source_tiff 2220",
                                       "large_image_source_pil 64"]


@pytest.mark.container
def test_a_detector_in_the_container_finds_the_nuclei_the_host_finds(engine, image, mounted_slide, sample_svs,
                                                                     tmp_path):
    mount, slide = mounted_slide
    out = _writable_output_folder(tmp_path)
    arguments = ["--analysis_roi", REGION, "--device", "auto"]
    run = engine.run(image, ["UDNetDetection", slide, f"{OUT}/nuclei.anot", "--geojson", f"{OUT}/nuclei.geojson",
                             *arguments], mounts=(mount, (out, OUT, "rw")))
    assert run.returncode == 0, run.stderr
    assert "<filter-progress>" in run.stdout
    assert (out / "nuclei.anot").stat().st_uid == 1000  # written by the image's own non-root user
    host = tmp_path / "host.anot"
    subprocess.run([sys.executable, "-m", "plugins", "UDNetDetection", str(sample_svs), str(host), *arguments],
                   cwd=ROOT, check=True, capture_output=True)
    inside, outside = read_annotation(out / "nuclei.anot"), read_annotation(host)
    assert len(inside) == len(outside) > 50
    order_in, order_out = np.lexsort(inside.centroids.T), np.lexsort(outside.centroids.T)
    np.testing.assert_allclose(inside.centroids[order_in], outside.centroids[order_out], atol=0.5)
    assert len(read_geojson(out / "nuclei.geojson")) == len(inside)


@pytest.mark.container
def test_cuda_without_a_gpu_is_a_one_line_error_in_the_container(engine, image, mounted_slide, tmp_path):
    mount, slide = mounted_slide
    out = _writable_output_folder(tmp_path)
    run = engine.run(image, ["UDNetDetection", slide, f"{OUT}/nuclei.anot", "--analysis_roi", REGION,
                             "--device", "cuda"], mounts=(mount, (out, OUT, "rw")))
    assert run.returncode == 2
    assert _one_line_error(run.stderr).startswith("UDNetDetection: error:")
    assert "cuda" in run.stderr.lower()
    assert list(out.iterdir()) == []


@pytest.mark.container
@pytest.mark.parametrize("arguments, message", [
    ([], "python -m plugins: error: no CLI named"),
    (["NoSuchCLI", "--xml"], "python -m plugins: error: unknown CLI 'NoSuchCLI'"),
    (["UDNetDetection", f"{IN}/not-mounted.svs", f"{OUT}/nuclei.anot"], "UDNetDetection: error: input image"),
])
def test_bad_input_to_the_image_is_a_one_line_error(engine, image, tmp_path, arguments, message):
    out = _writable_output_folder(tmp_path)
    run = engine.run(image, arguments, mounts=((out, OUT, "rw"),))
    assert run.returncode == 2
    assert _one_line_error(run.stderr).startswith(message)
    assert list(out.iterdir()) == []
