#!/usr/bin/env bash
# Build corral_VERSION_amd64.deb with Debian's tooling (dpkg-buildpackage, debhelper,
# dh-virtualenv): corrald + the CLI in a private virtualenv (/opt/venvs/corral), the systemd
# unit, /etc/default/corrald, bash/zsh completion, man pages made from the CLI.
#
# usage: scripts/build-deb.sh [--out DIR] [--version VERSION]
#   --out DIR          where the .deb goes (default: dist/)
#   --version VERSION  the package version (default: pyproject's, +git<commits>.<hash> in a
#                      git checkout; $CORRAL_DEB_VERSION)
# Builds from a copy of the checkout's files (tracked and new, not ignored), never in place.
# Needs: debhelper, dh-virtualenv, python3-venv (packaging/apt-packages-dev.txt, which
# scripts/install-deps.sh installs), npm for the web console's assets
# (scripts/build-web-assets.sh), and a Python package index for pip (the build host's pip
# configuration applies).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="$here/dist"
version="${CORRAL_DEB_VERSION:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "build-deb.sh: --out needs a directory" >&2; exit 2; }; out="$2"; shift ;;
    --version) [ $# -ge 2 ] || { echo "build-deb.sh: --version needs a value" >&2; exit 2; }; version="$2"; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
for tool in dpkg-buildpackage dh dh_virtualenv; do
  command -v "$tool" >/dev/null || {
    echo "build-deb.sh: $tool is missing (apt-get install debhelper dh-virtualenv python3-venv)" >&2
    exit 1; }
done
base="$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/pyproject.toml" | head -1)"
if [ -z "$version" ]; then
  version="$base"
  if git -C "$here" rev-parse --git-dir >/dev/null 2>&1; then
    version="$base+git$(git -C "$here" rev-list --count HEAD).$(git -C "$here" rev-parse --short=8 HEAD)"
  fi
fi
if ! [[ "$version" =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
  echo "build-deb.sh: '$version' is not a Debian version of a native package" >&2
  exit 2
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/corral-deb.XXXXXX")"
trap 'rm -rf "$work"' EXIT
src="$work/corral-$version"
mkdir -p "$src"
if git -C "$here" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$here" && git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
     [ -e "$f" ] && printf '%s\0' "$f"; done | tar --null -T - -cf -) | tar -xf - -C "$src"
else
  tar -C "$here" --exclude=.venv --exclude=dist --exclude=build -cf - . | tar -xf - -C "$src"
fi
# The web console's third-party assets (git-ignored, built from assets/package-lock.json
# with npm) go into the package like the Python dependencies: fetched at build time.
if [ -x "$here/scripts/build-web-assets.sh" ]; then
  "$here/scripts/build-web-assets.sh"
  mkdir -p "$src/src/corral/web/static"
  cp -a "$here/src/corral/web/static/vendor" "$src/src/corral/web/static/"
fi
cp -a "$src/packaging/debian" "$src/debian"
sed 's#/usr/local/bin/corrald#/usr/bin/corrald#' "$src/packaging/corrald.service" \
  >"$src/debian/corral.corrald.service"
cat >"$src/debian/changelog" <<CHANGELOG
corral ($version) bookworm; urgency=medium

  * Built from the Corral source tree by scripts/build-deb.sh.

 -- Corral developers <corral@localhost>  $(date -R)
CHANGELOG
(cd "$src" && dpkg-buildpackage -b -us -uc --no-sign >"$work/build.log" 2>&1) || {
  tail -n 40 "$work/build.log" >&2
  echo "build-deb.sh: dpkg-buildpackage failed (the last lines of its log above)" >&2
  exit 1
}
mkdir -p "$out"
deb="corral_${version}_amd64.deb"
mv "$work/$deb" "$out/$deb"
echo "$out/$deb"
