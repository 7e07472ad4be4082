#!/usr/bin/env bash
# Machine set-up the test suite needs beyond .venv: a container engine that builds and runs the plugin image.
# A running docker is used as it is. Otherwise, as root on Debian with ../shared beside the repository,
# ../shared/tools/container-engine.sh installs podman with the settings these machines need (~1 min the
# first time, ~1 s after). Anywhere else it says in one line why not, and the image tests are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
engine_setup=../shared/tools/container-engine.sh
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo "setup-machine: using the running docker engine"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ -f "$engine_setup" ]; then
    bash "$engine_setup"
else
    echo "setup-machine: no container engine set up (needs root, apt-get and $engine_setup)" >&2
fi
