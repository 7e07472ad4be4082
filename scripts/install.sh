#!/usr/bin/env bash
# Create (or update) the environment .venv at the repository root with the pinned stack.
# --test also installs what the tests need (requirements-test.txt: a Girder server), resolved together
# with the runtime pins. Its pre-release pins (girder-large-image*==1.35.6a198) are exact, which uv's
# default pre-release mode (if-necessary-or-explicit) accepts.
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=(-r requirements.txt)
case "${1:-}" in
    --test) requirements+=(-r requirements-test.txt) ;;
    "") ;;
    *) echo "usage: $0 [--test]" >&2; exit 2 ;;
esac
python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
[ -x .venv/bin/python ] || python3 -m uv venv --quiet -p python3.11 .venv
python3 -m uv pip install --quiet -p .venv/bin/python "${requirements[@]}" histomicstk==1.4.0 \
    --override overrides.txt
if [ "${1:-}" = --test ]; then
    # HistomicsUI's Girder-5 build pins girder-large-image 1.32.2a115: install it without dependencies
    python3 -m uv pip install --quiet -p .venv/bin/python --no-deps histomicsui==2.0.0a2
fi
python3 -m uv pip install --quiet -p .venv/bin/python --no-deps -e .
