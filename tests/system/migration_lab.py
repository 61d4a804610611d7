"""Two corrald "hosts" on one machine: each in its own network namespace with its own address
and state directory, joined by a bridge in a third namespace the lab creates. Pairing,
QEMU's NBD and migration streams all go over those addresses; nothing touches the host's
own network. Used by the migration system tests and bench/migrate.py."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from corral.client import CorralClient
from corral.templates.image import TemplateImage
from tests.integration.conftest import remove_empty_cgroups

SUBNET = "10.231.{n}.{h}"


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def cgroup_mounts() -> str:
    """Shell commands that mount this host's cgroup hierarchies again: ``ip netns exec``
    mounts a fresh /sys (for the namespace's network devices) without them, and a corrald
    without cgroups applies no resource limits at all."""
    lines: list[str] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, after = line.split(" - ", 1)
        fstype, _source, options = after.split()[:3]
        where = before.split()[4]
        if fstype not in ("cgroup", "cgroup2") or not where.startswith("/sys/fs/cgroup"):
            continue
        opts = ",".join(o for o in options.split(",")
                        if o not in ("rw", "ro") and not o.startswith("release_agent="))
        if where != "/sys/fs/cgroup" and not lines:
            lines.append("mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup")
        lines.append(f"mkdir -p {where} && mount -t {fstype} "
                     f"{'-o ' + opts if opts else ''} {fstype} {where}")
    for entry in Path("/sys/fs/cgroup").iterdir():
        if entry.is_symlink():
            lines.append(f"ln -s {os.readlink(entry)} {entry}")
    return " && ".join(lines) or "true"


@dataclass
class Host:
    name: str
    netns: str
    address: str
    state_dir: Path
    cgroup_root: str = "corral"
    """Each daemon's own cgroup root: both run on this one host, with the same ids."""
    port: int = 8443
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.state_dir / "corral.sock"

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"

    @property
    def token(self) -> str:
        return (self.state_dir / "token").read_text().strip()

    def client(self) -> CorralClient:
        return CorralClient(socket=str(self.socket))

    def cli(self, *args: str, check: bool = False,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, CORRAL_SOCKET=str(self.socket), COLUMNS="200")
        proc = subprocess.run([sys.executable, "-m", "corral.cli.main", *args],
                              capture_output=True, text=True, env=env, timeout=timeout,
                              check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"[{self.name}] corral {' '.join(args)}: {proc.stderr}")
        return proc

    def start(self, extra_env: dict[str, str] | None = None,
              options: tuple[str, ...] = ()) -> None:
        """``options``: more corrald options (``--test-faults``)."""
        self.socket.unlink(missing_ok=True)
        env = dict(os.environ, CORRAL_CGROUP_ROOT=self.cgroup_root, **(extra_env or {}))
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "sh", "-c", cgroup_mounts() + ' && exec "$@"',
             "corrald", sys.executable, "-m", "corral.daemon.main",
             "--state-dir", str(self.state_dir), "--socket", str(self.socket),
             "--drivers", "real", "--listen", f"{self.address}:{self.port}",
             "--token-file", str(self.state_dir / "token"), "--node", self.name,
             "--log-level", "info", *options],
            stderr=open(self.state_dir / "corrald.log", "ab"),  # noqa: SIM115
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.socket.exists() and (self.state_dir / "token").exists():
                with contextlib.suppress(Exception), self.client() as c:
                    c.host_info()
                    return
            if self.process.poll() is not None:
                raise RuntimeError((self.state_dir / "corrald.log").read_text()[-3000:])
            time.sleep(0.1)
        raise RuntimeError(f"corrald {self.name} did not come up")

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def instances(self) -> dict[str, dict[str, object]]:
        listed = json.loads(self.cli("list", "--format", "json", check=True).stdout or "[]")
        return {str(i["name"]): i for i in listed}


@dataclass
class Lab:
    template: TemplateImage
    roles: tuple[str, ...] = ("a", "b")
    """The hosts' names (each its own namespace, state directory and corrald --node)."""
    net: int = 231
    """The shared segment is 10.NET.0.0/24; host i (from 1) has 10.NET.0.i."""
    prefix: str = "crltest-mig"
    """Of the namespaces' and cgroup roots' names."""
    hosts: list[Host] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="corral-mig-")))

    def __post_init__(self) -> None:
        self.root.chmod(0o711)  # unprivileged container roots (uid 100000) walk through
        tag = uuid.uuid4().hex[:6]
        hub = f"{self.prefix}-{tag}-hub"
        self._add_ns(hub)
        sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", hub, "link", "set", "br0", "up")
        self.hub = hub
        self.tag = tag
        net = self.net

        for index, role in enumerate(self.roles, start=1):
            ns = f"{self.prefix}-{tag}-{role}"
            self._add_ns(ns)
            sh("ip", "-n", hub, "link", "add", f"p{role}", "type", "veth", "peer", "name",
               "eth0", "netns", ns)
            sh("ip", "-n", hub, "link", "set", f"p{role}", "master", "br0", "up")
            address = f"10.{net}.0.{index}"
            sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            state = self.root / role
            state.mkdir()
            state.chmod(0o711)
            shutil.copytree(self.template.directory, state / "templates" / "tiny")
            self.hosts.append(Host(role, ns, address, state, f"{self.prefix}-{tag}-{role}"))

    def _add_ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)

    def uplink(self) -> str:
        """A veth from this (the root) namespace into the shared segment, 10.NET.0.254 on
        this side: for a service the hosts reach that runs here (e.g. etcd). Gone with the
        hub namespace (deleting one end of a veth deletes both)."""
        near = f"crl{self.tag}up"
        sh("ip", "link", "add", near, "type", "veth", "peer", "name", "pup", "netns", self.hub)
        sh("ip", "-n", self.hub, "link", "set", "pup", "master", "br0", "up")
        address = f"10.{self.net}.0.254"
        sh("ip", "addr", "add", f"{address}/24", "dev", near)
        sh("ip", "link", "set", near, "up")
        return address

    def start_hosts(self, extra_env: dict[str, str] | None = None,
                    options: tuple[str, ...] = (),
                    env_of: dict[str, dict[str, str]] | None = None) -> None:
        """The daemons, all at once (each waits for its own to answer); ``options``: more
        corrald options for each, ``env_of``: more variables for one host (by name)."""
        with ThreadPoolExecutor(len(self.hosts)) as pool:
            for started in [pool.submit(h.start, {**(extra_env or {}),
                                                  **(env_of or {}).get(h.name, {})}, options)
                            for h in self.hosts]:
                started.result()

    def start(self, extra_env: dict[str, str] | None = None, options: tuple[str, ...] = (),
              env_of: dict[str, dict[str, str]] | None = None) -> tuple[Host, Host]:
        """Both hosts up, each the other's paired remote."""
        self.start_hosts(extra_env, options, env_of)
        a, b = self.hosts
        a.cli("remote", "add", "b", b.url, "--token", b.token, check=True)
        b.cli("remote", "add", "a", a.url, "--token", a.token, check=True)
        return a, b

    def close(self) -> None:
        """Force every instance off on every host, stop the daemons (the hosts at once),
        remove the namespaces."""
        with ThreadPoolExecutor(len(self.hosts) or 1) as pool:
            list(pool.map(self._close_host, self.hosts))
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        for host in self.hosts:
            remove_empty_cgroups(host.cgroup_root)
        keep = os.environ.get("CORRAL_LAB_LOGS")  # a directory: the daemons' logs kept there
        for host in self.hosts if keep is not None else ():
            log = host.state_dir / "corrald.log"
            if keep is not None and log.exists():
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(log, Path(keep) / f"{self.tag}-{host.name}.log")
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _close_host(host: Host) -> None:
        try:
            if host.process is None or host.process.poll() is not None:
                host.start()
            # through the API, not the CLI: each CLI run is a Python start (~1 s here)
            with host.client() as c:
                # a migration still running holds its instance's lock: cancel it first
                for op in c.list_operations():
                    if op.status == "running":
                        with contextlib.suppress(Exception):
                            c.cancel_operation(op.id)
                            c.wait(op.id, 300)
                for item in c.list_instances():
                    if item.node == host.name:  # a cluster lists all
                        with contextlib.suppress(Exception):  # keep deleting the others
                            c.wait(c.delete_instance(item.name, force=True).id, 300)
        except Exception as exc:  # keep cleaning the rest
            print(f"cleanup of {host.name}: {exc}", file=sys.stderr)
        finally:
            host.stop()
