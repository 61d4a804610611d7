#!/usr/bin/env bash
# Set up Corral on a fresh Debian 12 host (as root) and run its main job:
# the daemon up on the embedded default (SQLite), the bundled `tiny` template built from
# Debian packages, one container and one VM created from it, started and listed.
#
# Options: --no-tcp (serve the API on the Unix socket only), --listen HOST:PORT (the TLS
# listener's address; default 0.0.0.0:8443), --advertise URL (the URL peers reach it at;
# default https://<first address of `hostname -I`>:PORT when listening on every address).
# The listener is what remote hosts and the web console (https://HOST:PORT/ui/) use; the
# end of the output says how to log in to the console. Its settings are kept in
# /etc/default/corrald, which the systemd unit and the background start below both read.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/corral
state=/var/lib/corral
defaults=/etc/default/corrald
listen=0.0.0.0:8443
advertise=""
usage() {
  echo "usage: $0 [--no-tcp | --listen HOST:PORT] [--advertise URL]"
  echo "  --no-tcp            serve the API on the Unix socket only (no TLS listener)"
  echo "  --listen HOST:PORT  where the TLS listener serves the API (default 0.0.0.0:8443)"
  echo "  --advertise URL     the https://HOST:PORT other hosts reach it at"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --no-tcp) listen="" ;;
    --listen) [ $# -ge 2 ] || { usage >&2; exit 2; }; listen="$2"; shift ;;
    --listen=*) listen="${1#--listen=}" ;;
    --advertise) [ $# -ge 2 ] || { usage >&2; exit 2; }; advertise="$2"; shift ;;
    --advertise=*) advertise="${1#--advertise=}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$listen" ] && ! [[ "$listen" =~ ^[^[:space:]]*:[0-9]+$ ]]; then
  echo "setup.sh: --listen '$listen' is not HOST:PORT" >&2
  exit 2
fi
"$here/scripts/install-system.sh"
"$here/scripts/build-web-assets.sh"  # the web console's assets, shipped in the package
# A copy of this checkout, not a link to it: the installed daemon does not change under a
# `git pull`, and test tools stay out of the production environment.
python="${CORRAL_PYTHON:-/usr/bin/python3}"  # Debian's own, as the package uses
[ -x "$python" ] || python="$(command -v python3)"
[ -x "$prefix/venv/bin/python" ] || "$python" -m venv "$prefix/venv"
"$prefix/venv/bin/pip" install -q --upgrade pip
"$prefix/venv/bin/pip" install -q "$here"
"$prefix/venv/bin/pip" install -q --force-reinstall --no-deps "$here"
ln -sf "$prefix/venv/bin/corral" /usr/local/bin/corral
ln -sf "$prefix/venv/bin/corrald" /usr/local/bin/corrald
install -m 0644 "$here/packaging/corrald.service" /etc/systemd/system/corrald.service
# Tab completion (bash, zsh) and man pages made from the CLI: what the Debian package ships.
install -D -m 0644 "$here/packaging/completion/corral.bash" /etc/bash_completion.d/corral
install -D -m 0644 "$here/packaging/completion/_corral" /usr/local/share/zsh/site-functions/_corral
"$prefix/venv/bin/python" -m corral.cli.docgen man --readme "$here/README.md" /usr/local/share/man/man1

# The listener's address (CORRAL_LISTEN) and the URL peers reach it at (CORRAL_ADVERTISE):
# this script's lines of /etc/default/corrald, rewritten on every run; other lines stay.
listen_host="${listen%:*}"
port="${listen##*:}"
case "$listen_host" in
  ""|0.0.0.0|"[::]"|"::")
    address="$(hostname -I 2>/dev/null | awk '{print $1}')"
    url="https://${address:-127.0.0.1}:$port"
    local_url="https://127.0.0.1:$port" ;;
  *) url="https://$listen_host:$port"; local_url="$url" ;;
esac
url="${advertise:-$url}"
touch "$defaults"
{
  grep -v '^CORRAL_LISTEN=\|^CORRAL_ADVERTISE=' "$defaults" || true
  echo "CORRAL_LISTEN=$listen"
  if [ -n "$listen" ]; then echo "CORRAL_ADVERTISE=$url"; fi
} >"$defaults.new"
mv "$defaults.new" "$defaults"

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
  (set -a; . "$defaults"; set +a
   exec setsid nohup /usr/local/bin/corrald --state-dir "$state" >>/var/log/corrald.log 2>&1 </dev/null) &
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
  instance_state="$(corral info "$name" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')"
  case "$instance_state" in
    running) ;;
    suspended) corral resume "$name" ;;
    *) corral start "$name" ;;
  esac
done
corral list
corral exec web1 -- uname -a
corral exec db1 -- uname -a

# How to reach the API over TLS, checked with the admin token from here.
if [ -n "$listen" ]; then
  cert="$state/tls/cert.pem"
  token_file="$state/api.token"
  for _ in $(seq 1 50); do [ -s "$cert" ] && [ -s "$token_file" ] && break; sleep 0.2; done
  if ! CORRAL_URL="$local_url" CORRAL_TOKEN="$(cat "$token_file")" CORRAL_TLS_CERT="$cert" \
      corral whoami >/dev/null; then
    echo "corrald's TLS listener ($listen) does not answer; see its log" >&2
    exit 1
  fi
  echo
  echo "corrald's API over TLS: $url (listening on $listen; setup.sh --no-tcp turns it off)"
  echo "  certificate (copy it to clients, which pin it): $cert"
  echo "  admin token: $token_file (a user's: corral user add NAME)"
  echo "  e.g.: CORRAL_URL=$url CORRAL_TOKEN=\$(cat $token_file) CORRAL_TLS_CERT=$cert corral whoami"
  # The web console: the first run makes the user `admin` with a random password, shown once
  echo
  echo "Web console: $url/ui/"
  fingerprint="$(openssl x509 -noout -fingerprint -sha256 -in "$cert" 2>/dev/null | cut -d= -f2 || true)"
  [ -z "$fingerprint" ] || echo "  its certificate is self-signed: accept it if the browser shows SHA-256 $fingerprint"
  if ! corral user list --format json | python3 -c 'import json,sys; sys.exit(0 if any(u["name"] == "admin" for u in json.load(sys.stdin)) else 1)'; then
    password="$(python3 -c 'import secrets; print(secrets.token_urlsafe(12))')"
    corral user add admin --role admin >/dev/null
    printf '%s\n' "$password" | corral user passwd admin --password-stdin >/dev/null
    echo "  log in as: admin   password: $password   (shown only now; change it: corral user passwd admin)"
  else
    echo "  log in as an admin user, e.g. admin (set its password: corral user passwd admin)"
  fi
else
  echo
  echo "corrald's API: Unix socket /run/corral/corral.sock only (no TLS listener: --no-tcp)"
  echo "  the web console is served on the TLS listener: run setup.sh without --no-tcp to have it"
fi
