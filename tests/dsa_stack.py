"""The DSA's job machinery, real and on loopback, for tests/test_dsa_job.py.

A Redis broker, the container engine's Docker API (``podman system service``, or a running docker), a
girder_worker process that runs jobs in the plugin image through that API, and a headless Chromium driven by
selenium. Every process is started here, by PID, and stopped by PID (terminate, then kill after 10 s).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from container_engine import ContainerEngine

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")  # Debian's chromium-driver: selenium never downloads one
BROWSER_FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000")


class StackUnavailable(RuntimeError):
    """A piece of the machinery is not installed here (the message names it and how to get it)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """Terminate a process by its PID, and kill it if it has not stopped within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def background(command: list[str], log: Path, ready: Callable[[], bool], what: str, timeout: float = 60,
               environment: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Start ``command`` with its output in ``log``, wait until ``ready()``, yield it, stop it by PID."""
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise RuntimeError(f"{what} did not start (exit code {process.poll()}); its log ends:\n{tail}")
            time.sleep(0.2)
        yield process
    finally:
        stop(process)


@contextlib.contextmanager
def redis_broker(folder: Path) -> Iterator[str]:
    """Debian's redis-server on a free loopback port, nothing saved to disk: yields its ``redis://`` URL."""
    if shutil.which("redis-server") is None:
        raise StackUnavailable("no redis-server (scripts/setup-machine.sh installs it)")
    import redis

    port = free_port()
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    command = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
               "--dir", str(folder)]
    with background(command, folder / "redis.log", answers, "redis-server"):
        yield f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def docker_api(engine: ContainerEngine, folder: Path) -> Iterator[str]:
    """The engine's Docker-compatible API: yields a ``DOCKER_HOST`` value the Docker SDK works with."""
    if engine.command == "docker":
        yield os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return
    import docker

    url = f"unix://{folder / 'podman.sock'}"

    def answers() -> bool:
        try:
            return docker.DockerClient(base_url=url, version="auto").ping()
        except docker.errors.DockerException:
            return False

    with background([engine.command, "system", "service", "--time=0", url], folder / "podman-service.log",
                    answers, "podman system service", environment=engine.environment):
        yield url


@contextlib.contextmanager
def girder_worker(folder: Path, broker: str, docker_host: str) -> Iterator[Path]:
    """A girder_worker (celery) process on the broker's default queue, running containers through
    ``docker_host``; its temporary volumes live under ``folder``. Yields its log."""
    temporary = folder / "worker-tmp"
    temporary.mkdir()
    log = folder / "girder-worker.log"
    environment = {**os.environ, "GIRDER_WORKER_BROKER": broker, "GIRDER_WORKER_BACKEND": broker,
                   "DOCKER_HOST": docker_host, "TMPDIR": str(temporary),
                   # CI runs the suite as root; celery refuses root with pickle content unless told
                   "C_FORCE_ROOT": "1"}
    command = [sys.executable, "-m", "celery", "-A", "girder_worker.app", "worker", "--loglevel=info",
               "--concurrency=1", "--hostname=dsa-test-worker@%h"]
    with background(command, log, lambda: " ready." in log.read_text(errors="replace"), "girder_worker",
                    environment=environment):
        yield log


def browser_unavailable() -> str | None:
    """Why no headless Chromium can be driven here, or None."""
    import importlib.util

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"no {' or '.join(missing)} (scripts/setup-machine.sh installs chromium and chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (bash scripts/install.sh --test)"
    return None


@contextlib.contextmanager
def chromium(log: Path) -> Iterator[object]:
    """A headless Chromium driven through Debian's chromedriver: yields the selenium driver; quits it."""
    reason = browser_unavailable()
    if reason:
        raise StackUnavailable(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER), log_output=str(log)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
