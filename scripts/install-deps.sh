#!/usr/bin/env bash
# A development and test environment: the host packages, then an editable install of this
# checkout with the test tools in .venv (or VENV_DIR).
# Usage: scripts/install-deps.sh [VENV_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$here/.venv}"
"$here/scripts/install-system.sh"
"$here/scripts/build-web-assets.sh"  # the web console's htmx and fonts (npm; cached)
# Tools only the tests and the package build need (dh-virtualenv, systemd-nspawn, zsh, …).
missing=()
while read -r pkg; do
  [ -n "$pkg" ] || continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < "$here/packaging/apt-packages-dev.txt"
if [ "${#missing[@]}" -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -q --no-install-recommends "${missing[@]}"; }
fi
# Debian's own interpreter (what a fresh Debian 12 has), not whatever python3 is first on
# PATH (a developer's pyenv): the tests then run on the Python the package and setup.sh use.
python="${CORRAL_PYTHON:-/usr/bin/python3}"
[ -x "$python" ] || python="$(command -v python3)"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -e "$here[dev]"
