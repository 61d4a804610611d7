#!/usr/bin/env bash
# Set up Corral on a fresh Debian 12 host (as root) and run its main job:
# the daemon up on the embedded default (SQLite), the bundled `tiny` template built from
# Debian packages, one container and one VM created from it, started and listed.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/corral
"$here/scripts/install-system.sh"
# A copy of this checkout, not a link to it: the installed daemon does not change under a
# `git pull`, and test tools stay out of the production environment.
[ -x "$prefix/venv/bin/python" ] || python3 -m venv "$prefix/venv"
"$prefix/venv/bin/pip" install -q --upgrade pip
"$prefix/venv/bin/pip" install -q "$here"
"$prefix/venv/bin/pip" install -q --force-reinstall --no-deps "$here"
ln -sf "$prefix/venv/bin/corral" /usr/local/bin/corral
ln -sf "$prefix/venv/bin/corrald" /usr/local/bin/corrald
install -m 0644 "$here/packaging/corrald.service" /etc/systemd/system/corrald.service

# (Re)start the daemon so it runs the code just installed; guests outlive a daemon restart.
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable corrald
  systemctl restart corrald
else
  # No systemd running (a container or a minimal VM): run the daemon in the background.
  if pkill -TERM -f "$prefix/venv/bin/corrald|/usr/local/bin/corrald"; then
    for _ in $(seq 1 50); do pgrep -f "$prefix/venv/bin/corrald|/usr/local/bin/corrald" >/dev/null || break; sleep 0.1; done
  fi
  mkdir -p /var/log
  setsid nohup /usr/local/bin/corrald >>/var/log/corrald.log 2>&1 < /dev/null &
fi
for _ in $(seq 1 150); do corral list >/dev/null 2>&1 && break; sleep 0.2; done
if ! corral list >/dev/null; then
  echo "corrald did not start; its log (journalctl -u corrald, or /var/log/corrald.log):" >&2
  tail -n 20 /var/log/corrald.log 2>/dev/null >&2 || journalctl -u corrald -n 20 >&2 || true
  exit 1
fi

# Rebuilt when missing or made from other guest files / builder / kernel (an upgrade).
corral template build tiny --if-outdated
corral info web1 >/dev/null 2>&1 || corral create web1 --type ct --template tiny --cpus 1 --memory 256M --disk 1G
corral info db1  >/dev/null 2>&1 || corral create db1  --type vm --template tiny --cpus 2 --memory 512M --disk 2G
for name in web1 db1; do
  state="$(corral info "$name" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')"
  case "$state" in
    running) ;;
    suspended) corral resume "$name" ;;
    *) corral start "$name" ;;
  esac
done
corral list
corral exec web1 -- uname -a
corral exec db1 -- uname -a
