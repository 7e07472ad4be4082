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
# --compile-bytecode: every CLI is a fresh process, and without compiled modules each run would compile torch's
# Python code again (about 1.5 s of a run on 2 cores; Python does not write the caches when PYTHONDONTWRITEBYTECODE
# is set or site-packages is read-only)
python3 -m uv pip install --quiet --compile-bytecode -p .venv/bin/python "${requirements[@]}" histomicstk==1.4.0 \
    --override overrides.txt
if [ "${1:-}" = --test ]; then
    # HistomicsUI's Girder-5 build pins girder-large-image 1.32.2a115: install it without dependencies
    python3 -m uv pip install --quiet -p .venv/bin/python --no-deps histomicsui==2.0.0a2
    # ... whose wheel ships no web client: HistomicsUI's own, built from its source, is in ../shared/vendor
    web_client=../shared/vendor/histomicsui-web-client/histomicsui-web-client-girder5-e2d95b0.tar.gz
    if [ -f "$web_client" ]; then
        site=$(.venv/bin/python -c 'import histomicsui, os; print(os.path.dirname(histomicsui.__file__))' 2>/dev/null)
        mkdir -p "$site/web_client" && tar -xzf "$web_client" -C "$site/web_client"
    fi
fi
python3 -m uv pip install --quiet -p .venv/bin/python --no-deps -e .
