#!/usr/bin/env bash
# The host part of installing Corral on Debian 12 (as root): Debian packages and root's
# subordinate ids for unprivileged containers. Safe to run again.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
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
# npm fetches the web console's assets (scripts/build-web-assets.sh); any npm will do (a
# NodeSource node ships its own), so Debian's is installed only when there is none.
command -v npm >/dev/null || { apt-get update -q; apt-get install -y -q --no-install-recommends npm; }
grep -q '^root:' /etc/subuid 2>/dev/null || echo 'root:100000:65536' >> /etc/subuid
grep -q '^root:' /etc/subgid 2>/dev/null || echo 'root:100000:65536' >> /etc/subgid
# CRIU (optional: container checkpoint/restore) — built only where the host's does not work.
"$here/scripts/install-criu.sh" || echo "CRIU: install-criu.sh failed; CRIU stays optional" >&2
