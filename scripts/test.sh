#!/usr/bin/env bash
# The whole test suite: lint, types, unit, integration (fake driver), driver contract and
# system tests (real LXC, real QEMU, real nftables/tc in namespaces the tests make; each
# skips with the machine's reason where the host cannot). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin
[ -x "$py/pytest" ] && [ -x "$py/ruff" ] && [ -x "$py/mypy" ] \
  && "$py/python" -c "import argon2, jinja2, multipart, playwright" 2>/dev/null \
  || scripts/install-deps.sh
scripts/build-web-assets.sh  # the web console's assets (skipped when built from this lock)
"$py/ruff" check src tests bench
"$py/mypy"
# Every test starts corrald and the CLI as new processes; where PYTHONDONTWRITEBYTECODE is
# set (this machine's environment sets it) each of them compiled Corral's ~190 modules
# again (~0.25 s of each daemon start). Byte-compiled once here, they are read from
# __pycache__ (git ignores it).
"$py/python" -m compileall -q -j 0 src >/dev/null
"$py/pytest" -q -rs --durations=25 -p no:cacheprovider "$@"
