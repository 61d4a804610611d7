#!/usr/bin/env bash
# Install what Corral needs on Debian 12: the Debian packages and a Python environment.
# Usage: scripts/install-deps.sh [VENV_DIR]   (default: .venv in the checkout)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$here/.venv}"
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then echo "run as root" >&2; exit 1; fi
missing=()
while read -r pkg; do
  [ -n "$pkg" ] || continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < "$here/packaging/apt-packages.txt"
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Root needs subordinate ids for unprivileged containers.
grep -q '^root:' /etc/subuid 2>/dev/null || echo 'root:100000:65536' >> /etc/subuid
grep -q '^root:' /etc/subgid 2>/dev/null || echo 'root:100000:65536' >> /etc/subgid
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -e "$here[dev]"
