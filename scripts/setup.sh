#!/usr/bin/env bash
# Set up Corral on a fresh Debian 12 host (as root) and run its main job:
# the daemon up on the embedded default (SQLite), the bundled `tiny` template built from
# Debian packages, one container and one VM created from it, started and listed.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/corral
"$here/scripts/install-deps.sh" "$prefix/venv"
ln -sf "$prefix/venv/bin/corral" /usr/local/bin/corral
ln -sf "$prefix/venv/bin/corrald" /usr/local/bin/corrald
install -m 0644 "$here/packaging/corrald.service" /etc/systemd/system/corrald.service

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --now corrald
else
  # No systemd running (a container or a minimal VM): run the daemon in the background.
  if ! corral host info >/dev/null 2>&1; then
    mkdir -p /var/log
    setsid nohup /usr/local/bin/corrald >>/var/log/corrald.log 2>&1 < /dev/null &
  fi
fi
for _ in $(seq 1 100); do corral host info >/dev/null 2>&1 && break; sleep 0.2; done
corral host info >/dev/null || { echo "corrald did not start; see /var/log/corrald.log or journalctl -u corrald" >&2; exit 1; }

corral template info tiny >/dev/null 2>&1 || corral template build tiny
corral info web1 >/dev/null 2>&1 || corral create web1 --type ct --template tiny --cpus 1 --memory 256M --disk 1G
corral info db1  >/dev/null 2>&1 || corral create db1  --type vm --template tiny --cpus 2 --memory 512M --disk 2G
for name in web1 db1; do
  [ "$(corral info "$name" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')" = running ] || corral start "$name"
done
corral list
corral exec web1 -- uname -a
corral exec db1 -- uname -a
