#!/usr/bin/env bash
# Install, set up the machine (a container engine for the image tests), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
bash scripts/setup-machine.sh
.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
