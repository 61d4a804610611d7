"""The Debian package, installed, upgraded and purged in a Debian 12 system container with
systemd that the test makes (tests/system/debcontainer.py), never on this host.

* install: the previous release's package (built from an older commit of this repository,
  $CORRAL_UPGRADE_FROM, default RELEASE_FROM below: schema head 0013) with
  ``apt-get install ./corral_*.deb`` gives a running corrald (the systemd unit, enabled);
  a user, a network, a VM and a container are made with it and the guests started;
* upgrade: the current tree's package installed over it: corrald restarted by the unit (a
  new process), the database migrated at its start (0013 -> this tree's head), the state kept
  (the user, the network, both instances), the guests still running (the same QEMU and
  container init pids) and answering ``corral exec``; the longest time the API did not
  answer is measured and bounded; completion and man pages of the new package in place;
* purge: no corrald, no guest, no /var/lib/corral, /etc/default/corrald, /opt/venvs/corral,
  unit, subordinate ids postinst added, nftables table.

Guests: no /dev/kvm in the container (QEMU runs under TCG); a container guest runs only if
this host lets LXC run inside systemd-nspawn, otherwise that part is skipped with the
machine's reason (the VM part still runs).

Slow (building the packages: pip installs ~45 distributions and dpkg packs ~200 MB; the
container's apt installs QEMU and LXC): runs with CORRAL_SLOW_TESTS=1. Built packages are
cached under /var/tmp/corral-test-deb-cache: the current tree's keyed by the content of the
files that go into it ($CORRAL_TEST_DEB: test that package instead), the previous
release's by its commit (releases/COMMIT/). The bounded form in the default suite is
tests/unit/test_packaging.py.
"""

from __future__ import annotations

import hashlib
import json
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


RELEASE_FROM = "5eb1de6d735946bd518c15e50a5d1ff8d46ccd4b"
"""The previous release the upgrade starts from ($CORRAL_UPGRADE_FROM overrides it): the
last commit before schema 0014 (placement groups), with Debian 12's python3.11 fix
(host/untar.py) that any release creating guests on Debian 12 needs."""


def _release_deb(commit: str) -> Path:
    """The package of ``commit`` (any name git resolves), built from a detached worktree of
    this repository once and cached under releases/FULL_COMMIT/."""
    full = run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{commit}^{{commit}}"]
               ).stdout.strip()
    out = CACHE / "releases" / full
    found = sorted(out.glob("corral_*_amd64.deb"))
    if found:
        return found[0]
    tree = CACHE / "releases" / f".tree-{secrets.token_hex(4)}"
    partial = CACHE / "releases" / f".partial-{secrets.token_hex(4)}"
    try:
        run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), full])
        started = time.monotonic()
        run([str(tree / "scripts/build-deb.sh"), "--out", str(partial)], timeout=1800)
        print(f"built the release package of {full[:8]} in {time.monotonic() - started:.1f} s")
        partial.rename(out)
    finally:
        run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(tree, ignore_errors=True)
        shutil.rmtree(partial, ignore_errors=True)
    return sorted(out.glob("corral_*_amd64.deb"))[0]


@pytest.fixture(scope="module")
def old_deb() -> Path:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    return _release_deb(os.environ.get("CORRAL_UPGRADE_FROM", RELEASE_FROM))


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


WAIT_API = ("for i in $(seq 1 150); do corral list >/dev/null 2>&1 && exit 0; sleep 0.2; done; "
            "journalctl -u corrald --no-pager | tail -30; exit 1")
SCHEMA = ("python3 -c \"import sqlite3; print(sqlite3.connect('/var/lib/corral/corral.db')"
          ".execute('select version_num from alembic_version').fetchone()[0])\"")


def _head() -> str:
    """This tree's schema head: the highest numbered migration."""
    versions = ROOT / "src/corral/state/migrations/versions"
    return max(f.name.split("_", 1)[0] for f in versions.glob("[0-9]*_*.py"))


def _pid(container: Container, name: str) -> int:
    info = json.loads(container.sh(f"corral info {name} -f json").stdout)
    assert info["state"] == "running", info
    pid = int(info["pid"])
    assert container.sh(f"test -d /proc/{pid}", check=False).returncode == 0, info
    return pid


def _answers(container: Container, name: str, tries: int = 300) -> str:
    """``uname -n`` run in guest ``name`` by ``corral exec``, once it answers (a VM under TCG
    on a loaded host takes a while to boot its agent)."""
    got = container.sh(f"for i in $(seq 1 {tries}); do corral exec {name} -- uname -n "
                       "2>/tmp/exec.err && exit 0; sleep 1; done; cat /tmp/exec.err; "
                       f"corral info {name}; exit 1", timeout=tries * 3 + 60)
    return got.stdout.strip()


def _make_guests(container: Container, tiny: Path) -> dict[str, str]:
    """A VM and (where LXC runs here) a container made and started by the installed corrald:
    {name: why it is absent or ""}."""
    c = container.sh
    shutil.copytree(tiny, container.root / "var/lib/corral/templates/tiny")
    c("corral create pkgvm --type vm --template tiny --memory 128M --start", timeout=600)
    made = {"pkgvm": ""}
    ct = c("corral create pkgct --type ct --template tiny --start", check=False, timeout=600)
    if ct.returncode != 0:
        made["pkgct"] = (ct.stderr.strip() or ct.stdout.strip())[-600:]
        c("corral delete pkgct --force >/dev/null 2>&1 || true")
    else:
        made["pkgct"] = ""
    return made


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from corral.templates.builders.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny")).directory


def test_upgrade_from_release_with_running_guests(
        old_deb: Path, deb: Path, container: Container, tiny: Path) -> None:
    test_started = time.monotonic()
    container.fetch_for(old_deb)
    container.fetch_for(deb)
    container.put(old_deb, "/root/" + old_deb.name)
    container.put(deb, "/root/" + deb.name)
    c = container.sh

    # install the previous release ------------------------------------------------------
    started = time.monotonic()
    c(f"apt-get install -y -q /root/{old_deb.name}", timeout=900)
    print(f"apt-get install of {old_deb.name} (with dependencies) took "
          f"{time.monotonic() - started:.1f} s")
    assert c("systemctl is-enabled corrald").stdout.strip() == "enabled"
    c(WAIT_API)
    assert c("systemctl is-active corrald").stdout.strip() == "active"
    assert c("readlink -f /usr/bin/corrald").stdout.strip() == "/opt/venvs/corral/bin/corrald"
    assert c("grep -c '^root:100000:65536$' /etc/subuid").stdout.strip() == "1"
    assert "CORRAL_LISTEN" in c("cat /etc/default/corrald").stdout
    old_schema = c(SCHEMA).stdout.strip()
    assert old_schema < _head(), f"the release's schema {old_schema} is not older than {_head()}"
    # no pip at install time: the maintainer scripts never name it
    scripts = c("cat /var/lib/dpkg/info/corral.*inst /var/lib/dpkg/info/corral.*rm").stdout
    assert not re.search(r"^[^#]*\bpip3?\b", scripts, re.M)

    # state and running guests made by the release --------------------------------------
    c("corral user add alice >/dev/null && corral network create lan --subnet 10.79.0.0/24")
    started = time.monotonic()
    absent = _make_guests(container, tiny)
    guests = [name for name, why in absent.items() if not why]
    before = {name: (_pid(container, name), _answers(container, name)) for name in guests}
    print(f"guests {guests} made, started and answering in {time.monotonic() - started:.1f} s")
    first_pid = c("systemctl show -p MainPID --value corrald").stdout.strip()

    # upgrade to this tree's package, a poller recording when the API answers ------------
    (container.root / "root/poll.py").write_text(POLLER)
    c("nohup python3 /root/poll.py >/dev/null 2>&1 &")
    time.sleep(1)
    started = time.monotonic()
    c(f"apt-get install -y -q /root/{deb.name}", timeout=900)
    print(f"apt-get upgrade took {time.monotonic() - started:.1f} s")
    c(WAIT_API)
    time.sleep(1)
    c("pkill -f /root/poll.py || true")
    log = c("cat /root/poll.log").stdout
    states = [line.split()[0] for line in log.splitlines() if line.strip()]
    print(f"poller: {len(states)} samples, {states.count('down')} down")
    assert len(states) >= 20 and states[0] == "up" and states[-1] == "up", states[:5]
    assert "down" in states, "the poller never saw the restart"
    gap = _api_gaps(log)
    print(f"the API did not answer for at most {gap:.2f} s during the upgrade")
    assert gap < RESTART_BOUND
    version = deb.name.split("_")[1]
    assert c("dpkg-query -W -f '${Version}' corral").stdout == version
    assert c("systemctl show -p MainPID --value corrald").stdout.strip() != first_pid
    assert c(SCHEMA).stdout.strip() == _head(), "corrald did not migrate the database"
    migrated = c("journalctl -u corrald --no-pager -o cat | grep -c 'Running upgrade "
                 f"{old_schema} ->'", check=False).stdout.strip()
    assert migrated == "1", f"the upgrade's migration from {old_schema} was not logged once"
    assert "alice" in c("corral user list").stdout
    assert "lan" in c("corral network list").stdout
    listed = c("corral list").stdout
    for name in absent:
        if not absent[name]:
            assert name in listed
    # the guests outlived the restart: the same processes, still answering
    for name, (pid, uname) in before.items():
        assert _pid(container, name) == pid, f"{name} was restarted by the upgrade"
        assert _answers(container, name, tries=60) == uname
    # the new package's completion and man pages, asking the new corrald
    assert c("ls /usr/share/man/man1/").stdout.count("corral") >= 10
    c("test -f /usr/share/bash-completion/completions/corral")
    c("test -f /usr/share/zsh/vendor-completions/_corral")
    done = c("corral __complete bash 3 corral user token ''").stdout.split()
    assert done == ["alice"]
    # the guests are the new corrald's to stop
    for name in guests:
        c(f"corral stop {name}", timeout=300)
        assert json.loads(c(f"corral info {name} -f json").stdout)["state"] == "stopped"
        c(f"corral start {name}", timeout=300)

    # purge -----------------------------------------------------------------------------
    c("apt-get purge -y -q corral", timeout=300)
    for path in ("/var/lib/corral", "/etc/default/corrald", "/opt/venvs/corral",
                 "/usr/bin/corral", "/lib/systemd/system/corrald.service", "/run/corral"):
        assert c(f"test -e {path}", check=False).returncode != 0, f"{path} left after purge"
    assert c("pgrep -x corrald", check=False).returncode != 0
    assert c("pgrep -f qemu-system", check=False).returncode != 0, "a VM outlived purge"
    assert c("grep -c '^root:' /etc/subuid", check=False).stdout.strip() == "0"
    assert "corral" not in c("nft list tables 2>/dev/null || true").stdout
    assert c("systemctl is-enabled corrald", check=False).returncode != 0
    print(f"the test took {time.monotonic() - test_started:.1f} s after the packages were built")
    for name, why in absent.items():
        if why:
            pytest.skip(f"guest {name} could not run inside systemd-nspawn here "
                        f"(the rest passed): {why}")
