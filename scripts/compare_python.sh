#!/usr/bin/env bash
# Decoder speed next to the Python `enocean` package on the same capture, in one run.
# Creates ./bench-venv with pip on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${BENCH_VENV:-bench-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet enocean==0.60.1
exec "$venv/bin/python" scripts/compare_python.py "$@"
