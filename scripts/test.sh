#!/usr/bin/env bash
# The whole test suite: lint, types, unit, integration (fake driver) and system tests
# (real LXC, real QEMU; they skip with the machine's reason where the host cannot).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin
"$py/ruff" check src tests bench
"$py/mypy"
"$py/pytest" -q -p no:cacheprovider "$@"
