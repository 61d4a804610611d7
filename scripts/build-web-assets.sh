#!/usr/bin/env bash
# The web console's third-party assets (htmx, the Inter font, xterm.js, noVNC) from the
# npm registry, pinned by assets/package-lock.json, copied into src/corral/web/static/vendor
# (git-ignored; shipped inside the Python package: no CDN at run time).
# Idempotent: skipped when the vendor folder was built from this lock file by this script.
# Usage: scripts/build-web-assets.sh [--force]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
assets="$here/assets"
vendor="$here/src/corral/web/static/vendor"
stamp="$vendor/.built-from"
want="$(cat "$assets/package-lock.json" "$0" | sha256sum | cut -d' ' -f1)"
if [ "${1:-}" != "--force" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "build-web-assets.sh: npm is needed to fetch the web console's assets (apt-get install npm)" >&2
  exit 1
fi
# npm's own cache (~/.npm) makes a rebuild offline once the packages were fetched
npm ci --prefix "$assets" --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
modules="$assets/node_modules"
rm -rf "$vendor.new"
mkdir -p "$vendor.new/htmx" "$vendor.new/inter/files"
cp "$modules/htmx.org/dist/htmx.min.js" "$modules/htmx.org/LICENSE" "$vendor.new/htmx/"
inter="$modules/@fontsource-variable/inter"
cp "$inter/wght.css" "$inter/LICENSE" "$vendor.new/inter/"
cp "$inter"/files/inter-*-wght-normal.woff2 "$vendor.new/inter/files/"
mkdir -p "$vendor.new/xterm" "$vendor.new/novnc"
cp "$modules/@xterm/xterm/lib/xterm.mjs" "$modules/@xterm/xterm/css/xterm.css" \
   "$modules/@xterm/xterm/LICENSE" "$vendor.new/xterm/"
cp "$modules/@xterm/addon-fit/lib/addon-fit.mjs" "$vendor.new/xterm/"
cp "$modules/@xterm/addon-fit/LICENSE" "$vendor.new/xterm/LICENSE.addon-fit"
# noVNC's core is ES modules importing its vendored pako: both folders, as published
cp -r "$modules/@novnc/novnc/core" "$modules/@novnc/novnc/vendor" \
   "$modules/@novnc/novnc/LICENSE.txt" "$vendor.new/novnc/"
echo "$want" >"$vendor.new/.built-from"
rm -rf "$vendor"
mv "$vendor.new" "$vendor"
echo "web console assets built into ${vendor#"$here"/}"
