"""What can be proven about the image without a Docker engine: lint, and the build-time self-check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nuclei_core.cli_spec import available_clis

ROOT = Path(__file__).resolve().parents[1]


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
    assert "com.nvidia.volumes.needed" in dockerfile
