"""The Debian package, installed, upgraded and purged in a Debian 12 system container with
systemd that the test makes (tests/system/debcontainer.py), never on this host.

* install: ``apt-get install ./corral_*.deb`` gives a running corrald (the systemd unit,
  enabled), the CLI answering on the socket, completion and man pages in place;
* upgrade: the same content under a higher version, installed over it: corrald restarted by
  the unit (a new process), the state kept (a user, a network, the database migrated at its
  start); the longest time the API did not answer is measured and bounded;
* purge: no corrald, no /var/lib/corral, /etc/default/corrald, /opt/venvs/corral, unit,
  subordinate ids postinst added, nftables table.

Slow (building the package: pip installs ~45 distributions and dpkg packs ~200 MB; the
container's apt installs QEMU and LXC): runs with CORRAL_SLOW_TESTS=1. The built package
is cached under /var/tmp/corral-test-deb-cache keyed by the content of the files that go into it,
so a second run on an unchanged tree skips the build ($CORRAL_TEST_DEB: test that
package instead). The bounded form in the default suite
is tests/unit/packaging/test_debian_dir.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.debcontainer import CACHE, Container, debian_container, run, skip_reason

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.system,
    pytest.mark.timeout(2400),  # a build (~3 min) + apt in the container (~3 min) at load
    pytest.mark.skipif(os.environ.get("CORRAL_SLOW_TESTS") != "1",
                       reason="slow (builds the .deb, installs QEMU/LXC in a container): "
                              "CORRAL_SLOW_TESTS=1"),
]
POLLER = """import socket, time
log = open("/root/poll.log", "w", buffering=1)
while True:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect("/run/corral/corral.sock")
        s.sendall(b"GET /api/v1/version HTTP/1.0\\r\\nHost: corral\\r\\n\\r\\n")
        up = b" 200 " in s.recv(64).split(b"\\r\\n")[0] + b" "
    except OSError:
        up = False
    finally:
        s.close()
    log.write(("up" if up else "down") + " %f\\n" % time.time())
    time.sleep(0.05)
"""
"""Whether corrald answers, 20 times a second (the system's python3: the package's
virtualenv is replaced under it during the upgrade)."""
RESTART_BOUND = 15.0  # s the API may be away during an upgrade (a cluster lease is longer)


PACKAGED = ("src", "packaging", "pyproject.toml", "README.md", "scripts/build-deb.sh",
            "assets/package-lock.json", "scripts/build-web-assets.sh")
"""What goes into the package: its cache key is the content of these files alone."""


def _content_key() -> str:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z", "--",
                            *PACKAGED], cwd=ROOT, capture_output=True,
                           check=True).stdout.split(b"\0")
    digest = hashlib.sha256()
    for name in sorted(f for f in files if f):
        path = ROOT / name.decode()
        if path.is_file():
            digest.update(name + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def deb() -> Path:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    if os.environ.get("CORRAL_TEST_DEB"):  # a package built elsewhere, e.g. a release's
        return Path(os.environ["CORRAL_TEST_DEB"])
    out = CACHE / "debs" / _content_key()
    found = sorted(out.glob("corral_*_amd64.deb"))
    if found:
        return found[0]
    partial = CACHE / "debs" / f".partial-{secrets.token_hex(4)}"
    try:
        started = time.monotonic()
        run([str(ROOT / "scripts/build-deb.sh"), "--out", str(partial)], timeout=1800)
        print(f"built the .deb in {time.monotonic() - started:.1f} s")
        # an older cache entry is of no use any more: one package at a time
        for old in (CACHE / "debs").iterdir():
            if old != partial:
                shutil.rmtree(old, ignore_errors=True)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return sorted(out.glob("corral_*_amd64.deb"))[0]


def _bumped(deb: Path, into: Path) -> Path:
    """``deb`` under a higher version (``+upgrade1``): what an upgrade installs."""
    tree = into / "tree"
    run(["dpkg-deb", "-R", str(deb), str(tree)])
    control = tree / "DEBIAN" / "control"
    text = control.read_text()
    version = re.search(r"^Version: (.*)$", text, re.M)
    assert version is not None
    newer = version.group(1) + "+upgrade1"
    control.write_text(text.replace(version.group(0), f"Version: {newer}"))
    out = into / f"corral_{newer}_amd64.deb"
    run(["dpkg-deb", "--root-owner-group", "-Zzstd", "-z1", "-b", str(tree), str(out)])
    shutil.rmtree(tree)
    return out


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    os.environ.setdefault("CORRAL_BUILD_CACHE", "/var/tmp/corral-test-build-cache")
    from corral.templates.builders.debian import debootstrap_tree

    cache = Path(os.environ["CORRAL_BUILD_CACHE"])
    cache.mkdir(parents=True, exist_ok=True)
    base = debootstrap_tree(cache, lambda f, p: None)
    with debian_container(base, f"crltest-deb-{secrets.token_hex(3)}") as made:
        yield made


def _api_gaps(log: str) -> float:
    """The longest stretch of "down" samples in the poller's log (s)."""
    longest, down_since = 0.0, None
    for line in log.splitlines():
        state, _, stamp = line.partition(" ")
        if not stamp:
            continue
        t = float(stamp)
        if state == "down" and down_since is None:
            down_since = t
        elif state == "up" and down_since is not None:
            longest = max(longest, t - down_since)
            down_since = None
    return longest


def test_install_upgrade_purge(deb: Path, container: Container, tmp_path: Path) -> None:
    newer = _bumped(deb, tmp_path)
    container.fetch_for(deb)
    container.put(deb, "/root/" + deb.name)
    container.put(newer, "/root/" + newer.name)
    c = container.sh

    # install ---------------------------------------------------------------------------
    started = time.monotonic()
    c(f"apt-get install -y -q /root/{deb.name}", timeout=900)
    print(f"apt-get install (with dependencies) took {time.monotonic() - started:.1f} s")
    assert c("systemctl is-enabled corrald").stdout.strip() == "enabled"
    c("for i in $(seq 1 150); do corral list >/dev/null 2>&1 && exit 0; sleep 0.2; done; "
      "journalctl -u corrald --no-pager | tail -30; exit 1")
    assert c("systemctl is-active corrald").stdout.strip() == "active"
    assert c("corral --version").stdout.strip().startswith("corral ")
    assert c("readlink -f /usr/bin/corrald").stdout.strip() == "/opt/venvs/corral/bin/corrald"
    assert c("grep -c '^root:100000:65536$' /etc/subuid").stdout.strip() == "1"
    assert "CORRAL_LISTEN" in c("cat /etc/default/corrald").stdout
    assert c("ls /usr/share/man/man1/").stdout.count("corral") >= 10
    c("test -f /usr/share/bash-completion/completions/corral")
    c("test -f /usr/share/zsh/vendor-completions/_corral")
    # completion through the installed script asks the installed corrald
    c("corral user add alice >/dev/null && corral network create lan --subnet 10.79.0.0/24")
    done = c("corral __complete bash 3 corral user token ''").stdout.split()
    assert done == ["alice"]
    # no pip at install time: the maintainer scripts never name it
    scripts = c("cat /var/lib/dpkg/info/corral.*inst /var/lib/dpkg/info/corral.*rm").stdout
    assert not re.search(r"^[^#]*\bpip3?\b", scripts, re.M)
    first_pid = c("systemctl show -p MainPID --value corrald").stdout.strip()

    # upgrade, with a poller recording when the API answers -----------------------------
    (container.root / "root/poll.py").write_text(POLLER)
    c("nohup python3 /root/poll.py >/dev/null 2>&1 &")
    time.sleep(1)
    started = time.monotonic()
    c(f"apt-get install -y -q /root/{newer.name}", timeout=600)
    print(f"apt-get upgrade took {time.monotonic() - started:.1f} s")
    c("for i in $(seq 1 150); do corral list >/dev/null 2>&1 && exit 0; sleep 0.2; done; "
      "exit 1")
    time.sleep(1)
    c("pkill -f /root/poll.py || true")
    samples = [line.split() for line in c("cat /root/poll.log").stdout.splitlines()]
    states = [state for state, _ in samples]
    print(f"poller: {len(samples)} samples, {states.count('down')} down")
    assert len(samples) >= 20 and states[0] == "up" and states[-1] == "up", states[:5]
    assert "down" in states, "the poller never saw the restart"
    gap = _api_gaps(c("cat /root/poll.log").stdout)
    print(f"the API did not answer for at most {gap:.2f} s during the upgrade")
    assert gap < RESTART_BOUND
    assert c("dpkg-query -W -f '${Version}' corral").stdout.endswith("+upgrade1")
    assert c("systemctl show -p MainPID --value corrald").stdout.strip() != first_pid
    assert "alice" in c("corral user list").stdout
    assert "lan" in c("corral network list").stdout

    # purge -----------------------------------------------------------------------------
    c("apt-get purge -y -q corral", timeout=300)
    for path in ("/var/lib/corral", "/etc/default/corrald", "/opt/venvs/corral",
                 "/usr/bin/corral", "/lib/systemd/system/corrald.service", "/run/corral"):
        assert c(f"test -e {path}", check=False).returncode != 0, f"{path} left after purge"
    assert c("pgrep -x corrald", check=False).returncode != 0
    assert c("grep -c '^root:' /etc/subuid", check=False).stdout.strip() == "0"
    assert "corral" not in c("nft list tables 2>/dev/null || true").stdout
    assert c("systemctl is-enabled corrald", check=False).returncode != 0
    run(["true"])
