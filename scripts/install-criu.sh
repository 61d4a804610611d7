#!/usr/bin/env bash
# CRIU for container checkpoint/restore, built here when the host's own does not work.
# Debian 12's CRIU 3.17 fails `criu check` on recent kernels, and every CRIU release fails to
# dump TCP/UDP/packet sockets on Linux >= 6.16 (packaging/criu/*.patch says why). So, only
# when the host has no CRIU or its `criu check` fails: fetch Debian 13's orig tarball of a
# pinned version (sha256 pinned) through apt with a private trixie deb-src list (the host's
# own apt sources are left alone), apply our patches (packaging/criu/*.patch: the socket fix;
# no fork for an iptables tool that is not installed), build the criu binary (network locking
# with nftables) with build dependencies from the host's release, and install it as
# /usr/local/sbin/criu if its `criu check` passes. A stamp records version, patch hash and
# build flags (or the failure and the kernel it failed on), so a second run does nothing. CRIU stays optional: whatever goes wrong is
# printed and this script still exits 0. CORRAL_SKIP_CRIU=1 skips it. Run as root.
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive

version=4.1.1
tarball="criu_${version}.orig.tar.xz"
sha256=f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe
patches=("$here"/packaging/criu/*.patch)
prefix=/usr/local
target="$prefix/sbin/criu"
cache=/var/cache/corral/criu
stamp="$prefix/lib/corral/criu.stamp"
# Network locking during a dump with nftables, which Corral needs anyway (CRIU's default,
# iptables, is not installed on a Corral host).
# Its kernel-feature cache (criu.kdat) in a directory on a tmpfs that Corral makes
# (host/criu.py, KDAT_DIR): CRIU keeps it only on a tmpfs, and /run is not one everywhere;
# without it every dump and restore probes the kernel again (~30-80 ms each here).
make_flags=(NETWORK_LOCK_DEFAULT=NETWORK_LOCK_NFTABLES RUNDIR=/dev/shm/corral-criu)
build_deps=(build-essential pkg-config libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler
  protobuf-compiler python3-protobuf libnl-3-dev libnet1-dev libcap-dev libaio-dev libbsd-dev
  libnftables-dev libgnutls28-dev uuid-dev xz-utils)

say() { echo "CRIU: $*"; }
give_up() { say "$* — CRIU stays unavailable (optional: container checkpoint/restore is off)"; exit 0; }

[ "${CORRAL_SKIP_CRIU:-0}" = 1 ] && { say "skipped (CORRAL_SKIP_CRIU=1)"; exit 0; }
[ "$(id -u)" = 0 ] || give_up "not building: run as root"

patch_hash="$(cat "${patches[@]}" | sha256sum | cut -d' ' -f1)"
want="criu $version patch $patch_hash ${make_flags[*]}"
if [ -f "$stamp" ]; then
  have="$(head -n1 "$stamp")"
  if [ "$have" = "$want" ] && [ -x "$target" ]; then
    say "$target is $version with Corral's patch (up to date)"; exit 0
  fi
  if [ "$have" = "$want failed on $(uname -r)" ]; then
    say "an earlier build failed on this kernel ($(sed -n 2p "$stamp")); remove $stamp to retry"
    exit 0
  fi
fi

# The host's own CRIU, if it works, is used as it is.
host_criu="$(command -v criu || true)"
if [ -n "$host_criu" ] && [ "$host_criu" != "$target" ]; then
  if verdict="$(timeout 60 "$host_criu" check 2>&1)"; then
    say "the host's $host_criu passes \`criu check\`; not building"; exit 0
  fi
  say "the host's $host_criu fails \`criu check\`: $(echo "$verdict" | tail -n1)"
fi

# Fetch the pinned orig tarball (kept in the cache, so a rebuild does not fetch again).
mkdir -p "$cache" || give_up "cannot create $cache"
if ! echo "$sha256  $cache/$tarball" | sha256sum -c --status 2>/dev/null; then
  apt_dir="$(mktemp -d)"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts" "$apt_dir/dl"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    > "$apt_dir/sources.list"
  apt_opts=(-q -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
    -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "APT::Sandbox::User=root")
  say "fetching $tarball through apt (private trixie deb-src list)"
  if apt-get "${apt_opts[@]}" update >"$apt_dir/log" 2>&1; then
    # The .dsc / .debian.tar.xz may 404 while the orig tarball is fetched: only it is needed.
    (cd "$apt_dir/dl" && apt-get "${apt_opts[@]}" source --download-only criu >>"$apt_dir/log" 2>&1)
  fi
  [ -f "$apt_dir/dl/$tarball" ] && mv "$apt_dir/dl/$tarball" "$cache/$tarball"
  why="$(grep -E '^(E|Err):' "$apt_dir/log" | head -n2 | tr '\n' ' ')"
  rm -rf "$apt_dir"
  [ -f "$cache/$tarball" ] || give_up "could not fetch $tarball: ${why:-no reason given by apt}"
  if ! echo "$sha256  $cache/$tarball" | sha256sum -c --status; then
    rm -f "$cache/$tarball"; give_up "$tarball does not have the pinned sha256 $sha256"
  fi
fi

# Build dependencies, from the host's own release.
missing=()
for pkg in "${build_deps[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing build dependencies: ${missing[*]}"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1; apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } ||
    give_up "could not install the build dependencies"
fi

build="$(mktemp -d /var/tmp/corral-criu.XXXXXX)"
trap 'rm -rf "$build"' EXIT
tar -xJf "$cache/$tarball" -C "$build" || give_up "cannot unpack $tarball"
src="$build/criu-$version"
for p in "${patches[@]}"; do
  patch -d "$src" -p1 -s < "$p" || give_up "patch $(basename "$p") does not apply"
done
say "building criu $version (make -j$(nproc) ${make_flags[*]} criu)"
start=$SECONDS
if ! make -C "$src" -j"$(nproc)" "${make_flags[@]}" criu >"$build/make.log" 2>&1; then
  give_up "build failed: $(grep -m1 -iE 'error' "$build/make.log" || tail -n1 "$build/make.log")"
fi
say "built in $((SECONDS - start)) s"
mkdir -p "$(dirname "$stamp")"
if ! verdict="$(timeout 60 "$src/criu/criu" check 2>&1)"; then
  printf '%s failed on %s\n%s\n' "$want" "$(uname -r)" "$(echo "$verdict" | tail -n1)" > "$stamp"
  give_up "the built criu fails \`criu check\`: $(echo "$verdict" | tail -n1)"
fi
install -D -m 0755 "$src/criu/criu" "$target" || give_up "cannot install $target"
printf '%s\n%s\n' "$want" "$(echo "$verdict" | tail -n1)" > "$stamp"
say "installed $target ($version with Corral's patch): criu check says \"$(echo "$verdict" | tail -n1)\""
exit 0
