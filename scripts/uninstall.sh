#!/usr/bin/env bash
# Undo scripts/setup.sh on this host (as root): DELETES every instance of this host with its
# disks, snapshots and networks, leaves the cluster, stops corrald and removes what setup.sh
# installed (/opt/corral, the state in /var/lib/corral, the unit, /etc/default/corrald, the
# links in /usr/local/bin, completion, man pages, the log). Debian packages, CRIU in
# /usr/local/sbin, the subordinate ids and backup targets' contents (e.g. /mnt/nas/corral)
# stay. Asks first unless --yes.
#
# First through corrald, which undoes what it made (guests, their NICs, bridges, filters,
# shaping, mounts, loop devices); then, for what a dead or stuck corrald left, the sweep the
# Debian package's purge does (packaging/debian/corral.postrm).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
state=/var/lib/corral
prefix=/opt/corral
yes=no
case "${1:-}" in
  --yes|-y) yes=yes ;;
  "") ;;
  -h|--help) echo "usage: $0 [--yes]"; exit 0 ;;
  *) echo "uninstall.sh: unknown option '$1'" >&2; echo "usage: $0 [--yes]" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then echo "run as root" >&2; exit 1; fi
if [ "$yes" != yes ]; then
  if [ ! -t 0 ]; then
    echo "uninstall.sh deletes every instance and $state: run it with --yes" >&2
    exit 1
  fi
  read -r -p "Delete every instance, network and $state, and remove Corral? [y/N] " answer
  case "$answer" in y|Y|yes) ;; *) echo "nothing done"; exit 1 ;; esac
fi
corral=/usr/local/bin/corral
json_names() {  # the "name" of each object of a JSON list on stdin, space-separated
  python3 -c 'import json,sys; print(" ".join(o["name"] for o in json.load(sys.stdin)))'
}
if [ -x "$corral" ] && "$corral" list >/dev/null 2>&1; then
  # A member leaves first (its instances stay here); only this host's instances are deleted.
  "$corral" cluster leave >/dev/null 2>&1 || true
  node="$("$corral" host info --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"])')"
  names="$("$corral" list --node "$node" --format json | json_names)"
  if [ -n "$names" ]; then
    # shellcheck disable=SC2086  # one word per instance name
    "$corral" delete $names --force --yes || echo "uninstall.sh: some deletes failed" >&2
  fi
  for network in $("$corral" network list --format json | json_names); do
    "$corral" network delete "$network" || true
  done
  "$corral" host policy ksm=off >/dev/null 2>&1 || true  # KSM is host-wide: back to off
fi
# Stop corrald: the systemd unit, or the background process setup.sh started.
if [ -d /run/systemd/system ] && [ -f /etc/systemd/system/corrald.service ]; then
  systemctl disable --now corrald 2>/dev/null || true
fi
pattern="$prefix/venv/bin/corrald|/usr/local/bin/corrald"
if pkill -TERM -f "$pattern"; then
  for _ in $(seq 1 100); do pgrep -f "$pattern" >/dev/null || break; sleep 0.1; done
  pkill -KILL -f "$pattern" 2>/dev/null || true
fi
# The cluster's local etcd member outlives corrald (like a guest).
if [ -f "$state/etcd/etcd.pid" ]; then
  kill -TERM "$(cat "$state/etcd/etcd.pid")" 2>/dev/null || true
fi
# What corrald could not undo: the package's purge sweep (guests, mounts, loops, nft tables).
sh "$here/packaging/debian/corral.postrm" purge
rm -rf "$prefix" /etc/default/corrald /etc/systemd/system/corrald.service \
  /etc/bash_completion.d/corral /usr/local/share/zsh/site-functions/_corral
rm -f /usr/local/share/man/man1/corral.1 /usr/local/share/man/man1/corral-*.1 \
  /usr/local/share/man/man1/corrald.1
for link in /usr/local/bin/corral /usr/local/bin/corrald; do
  case "$(readlink "$link" 2>/dev/null)" in "$prefix"/*) rm -f "$link" ;; esac
done
[ -d /run/systemd/system ] && systemctl daemon-reload 2>/dev/null || true
echo "Corral removed (Debian packages, CRIU and backup targets' contents kept)"
