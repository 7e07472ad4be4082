#!/usr/bin/env bash
# Create (or update) the environment .venv at the repository root with the pinned stack.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
[ -x .venv/bin/python ] || python3 -m uv venv --quiet -p python3.11 .venv
python3 -m uv pip install --quiet -p .venv/bin/python -r requirements.txt histomicstk==1.4.0 \
    --override overrides.txt
python3 -m uv pip install --quiet -p .venv/bin/python --no-deps -e .
