"""A Debian 12 system container with systemd as its init, made for one test: the package's
install, upgrade and purge run there, never on the host.

* Root filesystem: the debootstrap tree the debian-12 template builder caches (minbase +
  systemd-sysv + iproute2; CORRAL_BUILD_CACHE, default /var/tmp/corral-test-build-cache),
  under an overlayfs whose upper layer is the test's: the cache is never written.
* Runtime: ``systemd-nspawn --boot`` with its own network namespace (``--private-network``:
  corrald there makes bridges and nftables tables that must not meet the host's), not
  registered with machined (no systemd on this host); commands enter it with ``nsenter``.
* cgroups: systemd-nspawn mounts the v1 controller hierarchies read-only (and, without a
  cgroup namespace root of its own, would show the host's whole tree: other daemons' groups).
  The container is started in groups of its own (``crltest-NAME`` in each v1 hierarchy, the
  root of its cgroup namespace) and, once booted, those mounts are made writable: corrald
  there makes its guests' groups under them, never beside the host's. Removed at stop.
* Packages: with no network inside, apt there reads the host's package lists (the same
  bookworm sources) and a test-owned archive directory that apt on the host fills for the
  container's dpkg status (``--download-only``), seeded by hard links from the host's own
  apt cache -- downloads happen only for what neither has.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

CACHE = Path(os.environ.get("CORRAL_DEB_TEST_CACHE", "/var/tmp/corral-test-deb-cache"))
HOST_ARCHIVES = Path("/var/cache/apt/archives")
LOOP_BIND = ["--bind=/dev/loop-control"] if Path("/dev/loop-control").exists() else []
"""The host's loop-control (nspawn's /dev has none): corrald there makes the /dev/loopN node
it is handed, as losetup does; containers' root disks need it."""
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def skip_reason() -> str | None:
    """Why this host cannot run the container, in the machine's words, or None."""
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn, overlayfs)"
    for tool in ("systemd-nspawn", "nsenter", "apt-get", "dpkg-buildpackage", "dh_virtualenv",
                 "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def run(argv: list[str], timeout: float = 600, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


class Container:
    def __init__(self, base: Path, name: str) -> None:
        self.base = base
        self.name = name
        self.work = Path(tempfile.mkdtemp(prefix=f"corral-{name}-", dir="/var/tmp"))
        self.root = self.work / "root"
        self.archives = CACHE / "archives"
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self.cgroups: list[Path] = []

    def _make_cgroups(self) -> None:
        """A group named after the container in each of the host's v1 controller hierarchies
        (cpuset's with its parent's CPUs and memory nodes)."""
        for line in Path("/proc/self/mounts").read_text().splitlines():
            _src, target, fstype, options = line.split()[:4]
            if fstype != "cgroup" or "name=" in options:
                continue
            group = Path(target) / self.name
            group.mkdir()
            self.cgroups.append(group)
            if "cpuset" in options.split(","):
                for file in ("cpuset.cpus", "cpuset.mems"):
                    (group / file).write_text((group.parent / file).read_text())

    def _enter_cgroups(self) -> None:
        """In the child before systemd-nspawn runs: into the container's groups."""
        for group in self.cgroups:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    def _wait_gone(self, timeout: float = 30) -> None:
        """After nspawn exits: no process left in the container's groups (the guests corrald
        left running die with its PID namespace, a moment later), and no loop device on a
        file of its root any more (corrald's pool and root disks: autoclear, released when
        their mounts go with the container's mount namespace)."""
        dev = ""
        if self.root.is_mount():
            st = os.stat(self.root / "var")
            dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            procs: list[str] = []
            for group in self.cgroups:  # the whole subtree
                for sub in group.rglob("cgroup.procs") if group.is_dir() else []:
                    procs += sub.read_text().split()
            loops = self._loops(dev) if dev else []
            if not procs and not loops:
                return
            for pid in procs:
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.2)
        for loop in self._loops(dev) if dev else []:
            run(["losetup", "-d", loop], check=False)

    @staticmethod
    def _loops(dev: str) -> list[str]:
        """Loop devices whose backing file is on the filesystem ``dev`` (major:minor)."""
        listed = run(["losetup", "--json", "-O", "NAME,BACK-MAJ:MIN"], check=False).stdout
        if not listed.strip():
            return []
        return [d["name"] for d in json.loads(listed)["loopdevices"]
                if str(d.get("back-maj:min") or "").strip() == dev]

    def _remove_cgroups(self) -> None:
        for group in self.cgroups:
            if not group.is_dir():
                continue
            for sub in [*sorted((p for p in group.rglob("*") if p.is_dir()),
                                key=lambda p: len(p.parts), reverse=True), group]:
                for _ in range(100):  # a process that just died keeps its group a moment
                    try:
                        sub.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.05)

    # lifecycle ---------------------------------------------------------------------------
    def boot(self, timeout: float = 90) -> None:
        for d in ("upper", "work", "root"):
            (self.work / d).mkdir()
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={self.base},upperdir={self.work / 'upper'},"
             f"workdir={self.work / 'work'}", str(self.root)])
        self._prepare_apt()
        self._make_cgroups()
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "-D", str(self.root), "--boot", "--register=no",
             "--keep-unit", "--private-network", f"--machine={self.name}",
             "--console=pipe", f"--bind={self.archives}:/srv/archives", *LOOP_BIND],
            stdin=subprocess.DEVNULL, stdout=open(self.work / "console.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=self._enter_cgroups)  # only writes to cgroup.procs
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited {self.nspawn.returncode}: "
                                     f"{(self.work / 'console.log').read_text()[-2000:]}")
            self.leader = self._find_leader()
            if self.leader:
                state = self.sh("systemctl is-system-running --wait", check=False, timeout=60)
                if state.stdout.strip() in ("running", "degraded"):
                    # the controllers nspawn mounted read-only: writable for corrald there
                    self.sh("awk '$3 == \"cgroup\" && $4 ~ /^ro,/ {print $2}' /proc/mounts | "
                            "while read -r m; do mount -o remount,bind,rw \"$m\"; done")
                    return
            time.sleep(0.3)
        raise AssertionError("the container's systemd did not come up")

    def _find_leader(self) -> int:
        assert self.nspawn is not None
        children = Path(f"/proc/{self.nspawn.pid}/task/{self.nspawn.pid}/children")
        with contextlib.suppress(OSError):
            for pid in children.read_text().split():
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
        return 0

    def _prepare_apt(self) -> None:
        """Host package lists in the container; apt there uses /srv/archives (bound from the
        test cache) and never the network."""
        self.archives.mkdir(parents=True, exist_ok=True)
        (self.archives / "partial").mkdir(exist_ok=True)
        lists = self.root / "var/lib/apt/lists"
        lists.mkdir(parents=True, exist_ok=True)
        for item in Path("/var/lib/apt/lists").iterdir():
            if item.is_file() and item.name != "lock":
                shutil.copy2(item, lists / item.name)
        conf = self.root / "etc/apt/apt.conf.d/99corral-test"
        conf.write_text('Dir::Cache::Archives "/srv/archives/";\n'
                        'Acquire::Retries "0";\nAPT::Install-Recommends "false";\n')
        shutil.copy2("/etc/apt/sources.list.d/debian.sources",
                     self.root / "etc/apt/sources.list.d/debian.sources") \
            if Path("/etc/apt/sources.list.d/debian.sources").exists() else None

    def fetch_for(self, deb: Path) -> None:
        """What installing ``deb`` in the container needs, into the archive directory: hard
        links from the host's apt cache first, then apt on the host (for the container's
        dpkg status) downloads the rest."""
        for item in HOST_ARCHIVES.glob("*.deb"):
            target = self.archives / item.name
            if not target.exists():
                try:
                    os.link(item, target)
                except OSError:
                    shutil.copy2(item, target)
        run(["apt-get", "install", "--download-only", "-y", "-q", "--no-install-recommends",
             "-o", f"Dir::State::status={self.root}/var/lib/dpkg/status",
             "-o", f"Dir::Cache::Archives={self.archives}/", "-o", "Debug::NoLocking=1",
             str(deb)], timeout=900)

    def stop(self) -> None:
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)  # nspawn asks the container's init to halt
            try:
                self.nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.nspawn.pid, signal.SIGKILL)
                self.nspawn.wait(timeout=10)
        self._wait_gone()
        self._remove_cgroups()
        if self.root.is_mount():
            run(["umount", "-R", str(self.root)], check=False)
            if self.root.is_mount():
                run(["umount", "-l", str(self.root)], check=False)
        shutil.rmtree(self.work, ignore_errors=True)

    # inside ------------------------------------------------------------------------------
    def sh(self, script: str, check: bool = True, timeout: float = 300
           ) -> subprocess.CompletedProcess[str]:
        """``script`` run by bash as root inside the container (its namespaces and root)."""
        return run(["nsenter", "-t", str(self.leader), "-a", "-r", "-w",
                    "env", "-i", f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8",
                    "DEBIAN_FRONTEND=noninteractive", "bash", "-c", script],
                   timeout=timeout, check=check)

    def put(self, source: Path, inside: str) -> None:
        shutil.copy2(source, self.root / inside.lstrip("/"))


@contextlib.contextmanager
def debian_container(base: Path, name: str) -> Iterator[Container]:
    container = Container(base, name)
    try:
        container.boot()
        yield container
    finally:
        container.stop()
