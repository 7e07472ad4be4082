#!/usr/bin/env bash
# Machine set-up the test suite needs beyond .venv:
# - a container engine that builds and runs the plugin image. A running docker is used as it is. Otherwise,
#   as root on Debian with ../shared beside the repository, ../shared/tools/container-engine.sh installs
#   podman with the settings these machines need (~1 min the first time, ~1 s after);
# - for the DSA job tests (tests/test_dsa_job.py): Debian's redis-server (girder_worker's broker) and
#   chromium with chromium-driver (HistomicsUI in a real browser), ~30 s the first time.
# Anywhere else it says in one line what it could not set up, and the tests needing it are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
engine_setup=../shared/tools/container-engine.sh
packages=(redis-server chromium chromium-driver)
as_root_on_debian() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo "setup-machine: using the running docker engine"
elif as_root_on_debian && [ -f "$engine_setup" ]; then
    bash "$engine_setup"
else
    echo "setup-machine: no container engine set up (needs root, apt-get and $engine_setup)" >&2
fi

if command -v redis-server >/dev/null && [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    echo "setup-machine: redis-server, chromium and chromedriver present"
elif as_root_on_debian; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null; }
    echo "setup-machine: installed ${packages[*]}"
else
    echo "setup-machine: ${packages[*]} not installed (needs root and apt-get)" >&2
fi
