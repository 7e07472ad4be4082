"""Build and run the plugin image with a real container engine (podman here, docker where a host has one).

Used by the image tests (tests/test_image.py) and the image benchmark (benchmarks/image.py). The image is
always built from a clean export of the committed tree (``git archive HEAD``), never from a working tree
with its virtual environment and outputs.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = "docker/Dockerfile"
IMAGE_TAG = "localhost/nuclei-analysis:test"  # what the suite builds and the DSA job tests add to Girder
# Written by ../shared/tools/container-engine.sh (through scripts/setup-machine.sh): podman's settings for
# these machines (runc, the ulimits the sandbox allows).
PODMAN_CONF = Path("/etc/containers/containers.conf.d-nuclei")


class EngineUnavailable(RuntimeError):
    """No container engine can build and run images on this machine (the message says why)."""


@dataclass(frozen=True)
class Completed:
    """A finished engine command: exit code, output and wall seconds."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


@dataclass(frozen=True)
class ContainerEngine:
    """One engine's command line (``podman`` or ``docker``) with the environment it needs."""

    command: str
    environment: dict[str, str]

    @classmethod
    def find(cls) -> ContainerEngine:
        """podman (with this machine's settings where they exist), else docker; EngineUnavailable if neither runs."""
        environment = dict(os.environ)
        if PODMAN_CONF.is_file() and "CONTAINERS_CONF" not in environment:
            environment["CONTAINERS_CONF"] = str(PODMAN_CONF)
        reasons = []
        for command in ("podman", "docker"):
            if shutil.which(command) is None:
                reasons.append(f"no {command}")
                continue
            engine = cls(command, environment)
            check = engine.call(["info"], timeout=60)
            if check.returncode == 0:
                return engine
            reasons.append(f"{command} info failed: {check.stderr.strip().splitlines()[-1:]}")
        raise EngineUnavailable("; ".join(reasons) + " (run scripts/setup-machine.sh as root)")

    def call(self, arguments: list[str], timeout: float = 600, stdin: bytes | None = None) -> Completed:
        """Run ``<engine> arguments``; never raises on a non-zero exit."""
        started = time.monotonic()
        result = subprocess.run([self.command, *arguments], input=stdin, capture_output=True, timeout=timeout,
                                env=self.environment)
        return Completed(result.returncode, result.stdout.decode(errors="replace"),
                         result.stderr.decode(errors="replace"), time.monotonic() - started)

    def build(self, context: Path, tag: str, timeout: float = 1800) -> Completed:
        """Build ``docker/Dockerfile`` of ``context`` as ``tag``, never pulling (the base must be local)."""
        no_pull = ["--pull=never"] if self.command == "podman" else []
        return self.call(["build", *no_pull, "-f", str(context / DOCKERFILE), "-t", tag, str(context)],
                         timeout=timeout)

    def image_size(self, tag: str) -> int:
        """The image's size in bytes, as the engine reports it (uncompressed layers)."""
        return int(self.call(["image", "inspect", "--format", "{{.Size}}", tag]).stdout.strip())

    def run(self, tag: str, arguments: list[str], mounts: tuple[tuple[Path, str, str], ...] = (),
            options: tuple[str, ...] = (), timeout: float = 600) -> Completed:
        """``run --rm`` with no network (nothing is downloaded at run time) and ``(host, container, mode)`` mounts."""
        volumes = [f"--volume={host}:{inside}:{mode}" for host, inside, mode in mounts]
        return self.call(["run", "--rm", "--network=none", *volumes, *options, tag, *arguments], timeout=timeout)


def export_committed_tree(destination: Path, revision: str = "HEAD") -> Path:
    """Unpack ``git archive revision`` of this repository into ``destination`` (created); the folder."""
    archive = subprocess.run(["git", "archive", "--format=tar", revision], cwd=ROOT, capture_output=True,
                             check=True).stdout
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(destination, filter="data")
    return destination
