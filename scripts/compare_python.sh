#!/usr/bin/env bash
# Speed next to the Python `enocean` package (0.60.1) on the same input, in one run.
#   bash scripts/compare_python.sh          ESP3 framing + ERP1, tests/data/mixed.esp3
#   bash scripts/compare_python.sh --eep    EEP decoding of every vector data telegram
# Creates ./bench-venv with pip on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${BENCH_VENV:-bench-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet enocean==0.60.1
if [ "${1:-}" = "--eep" ]; then
  shift
  exec "$venv/bin/python" scripts/compare_eep.py "$@"
fi
exec "$venv/bin/python" scripts/compare_python.py "$@"
