"""Container live migration by CRIU checkpoint/restore between two corralds (real drivers).

The two "hosts" (``migration_lab``) each get a bridged network ``lan`` whose uplink is a veth
into one more bridge in the lab's hub namespace, so both hosts' bridges are one L2 segment; a
third namespace (the client) sits on that segment too. A container of the default kind
(unprivileged) on ``lan``
runs, from its own init (an inittab entry), a counter in memory (tmpfs) and a TCP echo
server; the client holds a TCP connection to it. After ``corral migrate`` the counter goes on
from where it was (the same process), the connection opened before the move still answers,
and the command names the path and the downtime. Failures (CRIU cannot dump: fallback to
the restart path before anything stopped; the target's restore fails; the link is cut while
the dump is sent) leave the source running with the same processes and the target clean.
Skipped with the probe's reason where CRIU does not work.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from corral.drivers.migration import CHECKPOINT_DIR
from corral.host import criu
from corral.templates.image import TemplateImage
from tests.system.fixtures_template import tiny_template
from tests.system.limits_in_force import InForce, in_force, init_pid
from tests.system.migration_lab import Host, Lab, sh
from tests.system.net.lab import TRAFFIC

__all__ = ["tiny_template"]


def _why_not() -> str:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("lxc-checkpoint", "mkfs.ext4", "ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed on this host"
    status = criu.probe()
    return "" if status.works else f"CRIU does not work here: {status.reason}"


pytestmark = [pytest.mark.system, pytest.mark.skipif(bool(_why_not()), reason=_why_not())]

SUBNET = "10.78.0"
ROUTED_IP = "192.0.2.78"
MIB = 1024**2
SERVICE = """#!/bin/sh
# started by init (inittab): a counter in memory (tmpfs) and a TCP echo server
echo $$ > /tmp/service.pid
nc -ll -p 7000 -e cat </dev/null >/dev/null 2>&1 &
i=0
while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done
"""
CLIENT = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], 7000), timeout=30)
for line in sys.stdin:
    s.sendall(line.encode())
    got = b""
    while not got.endswith(b"\n"):
        chunk = s.recv(100)
        if not chunk:
            break
        got += chunk
    print(got.decode().strip() or "EOF", flush=True)
"""


@dataclass
class CriuLab:
    a: Host
    b: Host
    lab: Lab
    client_ns: str


@pytest.fixture(scope="module")
def criu_lab(tiny_template: TemplateImage) -> Iterator[CriuLab]:
    the_lab = Lab(tiny_template)
    try:
        hub, tag = the_lab.hub, the_lab.tag
        sh("ip", "-n", hub, "link", "add", "lan0", "type", "bridge")
        sh("ip", "-n", hub, "link", "set", "lan0", "up")
        for host in the_lab.hosts:
            sh("ip", "-n", hub, "link", "add", f"l{host.name}", "type", "veth", "peer",
               "name", "lanup", "netns", host.netns)
            sh("ip", "-n", hub, "link", "set", f"l{host.name}", "master", "lan0", "up")
            sh("ip", "-n", host.netns, "link", "set", "lanup", "up")
        client = f"crltest-mig-{tag}-c"
        the_lab._add_ns(client)
        sh("ip", "-n", hub, "link", "add", "lc", "type", "veth", "peer", "name", "eth0",
           "netns", client)
        sh("ip", "-n", hub, "link", "set", "lc", "master", "lan0", "up")
        sh("ip", "-n", client, "addr", "add", f"{SUBNET}.250/24", "dev", "eth0")
        sh("ip", "-n", client, "link", "set", "eth0", "up")
        a, b = the_lab.start({"CORRAL_MIGRATION_LEASE": "3"})
        # one subnet, a pool per host: two hosts' address managers do not know each other
        for host, pool in ((a, (10, 99)), (b, (100, 199))):
            host.cli("network", "create", "lan", "--subnet", f"{SUBNET}.0/24",
                     "--pool", f"{SUBNET}.{pool[0]}-{SUBNET}.{pool[1]}", "--uplink", "lanup",
                     check=True)
            host.cli("network", "create", "rt", "--type", "routed", check=True)
        yield CriuLab(a, b, the_lab, client)
    finally:
        the_lab.close()


def _exec(host: Host, name: str, script: str) -> str:
    done = host.cli("exec", name, "--", "sh", "-c", script, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _service_container(host: Host, name: str, *, privileged: bool = False,
                       data_disk: bool = False, routed: str = "") -> str:
    """A running container on ``lan`` whose init runs SERVICE (the default kind:
    unprivileged, unless ``privileged``), with a data disk at /srv/data if ``data_disk``
    and a second NIC on the routed network ``rt`` with address ``routed`` if given; its
    address on ``lan``."""
    host.cli("create", name, "--type", "ct", *(["--privileged"] if privileged else []),
             "--disk", "128M", check=True)
    host.cli("nic", "add", name, "--network", "lan", check=True)
    if routed:
        host.cli("nic", "add", name, "--network", "rt", "--ip", routed, check=True)
    if data_disk:
        host.cli("disk", "add", name, "data", "--size", "16M", "--path", "/srv/data",
                 check=True)
    host.cli("start", name, check=True)
    deadline = time.monotonic() + 60
    while host.cli("exec", name, "--", "true").returncode != 0:
        assert time.monotonic() < deadline, f"{name} never answered exec"
        time.sleep(0.3)
    script = SERVICE.replace("\n", "\\n")
    _exec(host, name, f"printf '{script}' > /root/service && chmod +x /root/service && "
                      "echo '::respawn:/root/service' >> /etc/inittab && kill -HUP 1")
    deadline = time.monotonic() + 20
    while not _exec(host, name, "cat /tmp/count 2>/dev/null; netstat -tln | grep -c :7000 "
                                "|| true").endswith("1"):
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.2)
    nics = json.loads(host.cli("nic", "list", name, "-f", "json", check=True).stdout)
    found = re.search(rf"{re.escape(SUBNET)}\.\d+", json.dumps(nics))
    assert found, nics
    return found.group(0)


def _host_pings(host: Host, address: str) -> bool:
    """ICMP echo from the host's own namespace (a routed NIC: the host's route to it)."""
    proc = subprocess.run(["ip", "netns", "exec", host.netns, sys.executable, TRAFFIC, "ping",
                           address, "2", "3"], capture_output=True, check=False, timeout=30)
    return proc.returncode == 0


def _counter(host: Host, name: str) -> tuple[int, str]:
    """(the counter, the pid of the process counting)."""
    out = _exec(host, name, "cat /tmp/count; p=$(cat /tmp/service.pid); "
                            "grep -q /root/service /proc/$p/cmdline && echo $p").split()
    return int(out[0]), out[-1]


class Client:
    """A TCP connection from the client namespace to the container's echo server."""

    def __init__(self, netns: str, address: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT, address],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _limits(host: Host, name: str) -> InForce:
    """The memory limit and CPU cap acting on ``name``'s init on ``host``."""
    found = json.loads(host.cli("info", name, "-f", "json", check=True).stdout)
    return in_force(init_pid(host.state_dir / "lxc", str(found["id"]), host.netns))


def _console_answers(host: Host, name: str, text: str) -> None:
    """The shell on ``name``'s console runs what is typed into ``corral console``."""
    env = dict(os.environ, CORRAL_SOCKET=str(host.socket), COLUMNS="200")
    deadline, seen = time.monotonic() + 30, ""
    while time.monotonic() < deadline:
        seen = subprocess.run(
            [sys.executable, "-m", "corral.cli.main", "console", name, "--linger", "2"],
            input=f"echo {text}\n", capture_output=True, text=True, env=env, timeout=60,
            check=False).stdout
        if text in seen.replace(f"echo {text}", ""):
            return
        time.sleep(1)
    raise AssertionError(f"the console of {name} never ran the echo: {seen[-500:]!r}")


def _downtime(said: str) -> float:
    found = re.search(r"downtime\s+([\d.]+)\s+ms", said)
    assert found, said
    return float(found.group(1))


def test_container_moves_with_its_processes_and_tcp_connection(criu_lab: CriuLab) -> None:
    """The default container (unprivileged): Corral makes its idmapped root and its veths
    for the restore, a bridged NIC's and a routed NIC's (the privileged kind:
    tests/system/test_criu_real.py)."""
    a, b = criu_lab.a, criu_lab.b
    address = _service_container(a, "ct1", data_disk=True, routed=ROUTED_IP)
    assert _host_pings(a, ROUTED_IP)
    # a file owned by a user of the container on its data disk, and a process appending to
    # another one there (its open file on the disk's mount moves with it)
    _exec(a, "ct1", "echo on-disk > /srv/data/f && chown 1000:1000 /srv/data/f && "
                    "setsid sh -c 'exec 3>>/srv/data/log; while :; do echo x >&3; "
                    "sleep 0.2; done' </dev/null >/dev/null 2>&1 &")
    a.cli("set", "ct1", "cpu_limit=40", "memory=200M", check=True)
    assert _limits(a, "ct1") == InForce(200 * MIB, 40.0)
    client = Client(criu_lab.client_ns, address)
    try:
        assert client.ask("before") == "before"
        count, pid = _counter(a, "ct1")
        # written just before the move, not synced: only in the source's page cache
        _exec(a, "ct1", "seq 1 30000 > /root/before")
        said = a.cli("migrate", "ct1", "b", check=True).stdout
        print(said)
        assert "path: checkpoint" in said and "checkpoint/restore" in said, said
        # its file systems were made read-only (synced, journal emptied), not waited for
        assert "disks read-only" in said, said
        assert _exec(b, "ct1", "md5sum < /root/before") == _exec(
            b, "ct1", "seq 1 30000 | md5sum")
        downtime = _downtime(said)
        assert b.instances()["ct1"]["state"] == "running"
        assert "ct1" not in a.instances()
        after, pid_after = _counter(b, "ct1")
        assert pid_after == pid  # the same process, not a restarted service
        assert after >= count  # it goes on from where it was
        assert client.ask("after the move") == "after the move"  # the same connection
        time.sleep(0.3)
        assert _counter(b, "ct1")[0] > after  # and counts on
        assert 0 < downtime < 30000
        # its limits act on it there (its init's own groups), and change live there
        assert _limits(b, "ct1") == InForce(200 * MIB, 40.0)
        b.cli("set", "ct1", "cpu_limit=30", "memory=180M", check=True)
        assert _limits(b, "ct1") == InForce(180 * MIB, 30.0)
        # its data disk: the same files, the same owners inside, still written to
        assert _exec(b, "ct1", "cat /srv/data/f; stat -c %u /srv/data/f") == "on-disk\n1000"
        logged = int(_exec(b, "ct1", "wc -c < /srv/data/log"))
        assert _exec(b, "ct1", "tr -d 'x\\n' < /srv/data/log | wc -c") == "0"  # no zeros
        time.sleep(0.6)
        assert int(_exec(b, "ct1", "wc -c < /srv/data/log")) > logged
        _exec(b, "ct1", "echo more >> /srv/data/f")
        # its routed NIC (a veth Corral made for the restore, no bridge): the address is
        # in the container and the target's route reaches it
        assert f"{ROUTED_IP}/32" in _exec(b, "ct1", "ip addr show dev eth1")
        assert _host_pings(b, ROUTED_IP)
        # its console (the pty Corral handed the restore) answers ``corral console``
        _console_answers(b, "ct1", "restored-console-ok")
        # the dump ran CRIU itself, with LXC's command line of the trial dump; a restored
        # container moves on the same way (the line came with its images), no trial
        assert "dump: console unbind" in said and ", criu dump " in said, said
        back = b.cli("migrate", "ct1", "a", check=True).stdout
        assert ", criu dump " in back and "trial" not in back, back
        assert client.ask("back again") == "back again"
        assert _counter(a, "ct1")[1] == pid
    finally:
        client.close()
    # its address came from a's pool: free it (the hosts' address managers are separate)
    a.cli("delete", "--force", "ct1", check=True)


def test_dump_refused_falls_back_to_restart_before_stopping(criu_lab: CriuLab) -> None:
    """A process left behind by an exec (its session leader was lxc-attach's shell, outside
    the container's pid namespace): the trial dump fails, the move takes the restart path
    with CRIU's reason. An exec still running (outside init's tree: CRIU would dump the
    container without it): the restart path, chosen before anything ran, naming it."""
    a, b = criu_lab.a, criu_lab.b
    _service_container(a, "ct2")
    # a memory snapshot first: its dump is a recent verdict, so the move skips its trial
    # dump and meets the stray process in the dump that stops the container — it still
    # falls back (the container was not stopped), not fail
    a.cli("snapshot", "create", "ct2", "warm", "--memory", check=True)
    _exec(a, "ct2", "sleep 1000 </dev/null >/dev/null 2>&1 &")
    said = a.cli("migrate", "ct2", "b", check=True).stdout
    print(said)
    assert "path: precopy" in said and "CRIU cannot dump it" in said, said
    assert "session leader" in said
    assert b.instances()["ct2"]["state"] == "running"
    moves = json.loads(a.cli("migration", "list", "-f", "json", check=True).stdout)
    assert "skipped" in str([m for m in moves if m.get("instance") == "ct2"]), moves
    # an exec still running (lxc-attach's child: outside init's tree, which CRIU's dump
    # would leave out, silently): the move back takes the restart path up front, naming it
    ran = threading.Thread(target=b.cli, args=("exec", "ct2", "--", "sleep", "38"))
    ran.start()
    try:
        deadline = time.monotonic() + 30
        while "sleep 38" not in _exec(b, "ct2", "ps"):
            assert time.monotonic() < deadline, "the exec never ran"
            time.sleep(0.2)
        said = b.cli("migrate", "ct2", "a", check=True).stdout
        print(said)
        assert "pre-copied restart (a process run from outside" in said, said
        assert "(sleep 38)" in said, said
    finally:
        ran.join()
    assert a.instances()["ct2"]["state"] == "running"
    a.cli("delete", "--force", "ct2", check=True)


def _host_ifname(host: Host, name: str) -> str:
    nics = json.loads(host.cli("nic", "list", name, "-f", "json", check=True).stdout)
    text = json.dumps(nics)
    found = re.search(r'"host_device":\s*"([^"]+)"', text)
    assert found, text
    return found.group(1)


def test_target_restore_fails_source_runs_on(criu_lab: CriuLab) -> None:
    """The target cannot restore (the NIC's host end name is taken there): the source
    restores its own checkpoint, the same process counts on, the target has nothing."""
    a, b = criu_lab.a, criu_lab.b
    _service_container(a, "ct3")
    count, pid = _counter(a, "ct3")
    ifname = _host_ifname(a, "ct3")
    sh("ip", "-n", b.netns, "link", "add", ifname, "type", "bridge")
    try:
        failed = a.cli("migrate", "ct3", "b")
    finally:
        sh("ip", "-n", b.netns, "link", "del", ifname, check=False)
    print(failed.stdout, failed.stderr)
    assert failed.returncode != 0
    assert a.instances()["ct3"]["state"] == "running"
    after, pid_after = _counter(a, "ct3")
    assert pid_after == pid and after >= count  # restored, not restarted
    assert "ct3" not in b.instances()
    assert not list((b.state_dir / "instances").glob("*/checkpoint"))


def test_link_cut_during_the_dump_transfer(criu_lab: CriuLab) -> None:
    """The link to the target breaks once the source is checkpointing: the source restores
    its checkpoint and runs on; the target drops the reservation when its lease ends."""
    a, b = criu_lab.a, criu_lab.b
    _service_container(a, "ct4")
    count, pid = _counter(a, "ct4")
    dump_dir = a.state_dir / "instances" / str(a.instances()["ct4"]["id"]) / CHECKPOINT_DIR
    assert not dump_dir.exists()
    # The cut must land inside the ~0.3 s from the stopping dump to the commit: the test
    # watches for the dump's directory on disk (the operation's phase row is written behind,
    # up to 0.25 s late) and applies a rule set an `nft -f -` already holds (it commits on
    # EOF, ~6 ms, where starting nft takes tens of ms under load).
    cut = subprocess.Popen(["ip", "netns", "exec", a.netns, "nft", "-f", "-"],
                           stdin=subprocess.PIPE, text=True)
    assert cut.stdin is not None
    cut.stdin.write("add table inet crlcut\n"
                    "add chain inet crlcut out { type filter hook output priority 0; }\n"
                    f"add rule inet crlcut out ip daddr {b.address} tcp dport {b.port} "
                    "reject with tcp reset\n")
    cut.stdin.flush()
    op = a.cli("migrate", "ct4", "b", "--no-wait", check=True).stdout.strip()
    deadline, polls = time.monotonic() + 60, 0
    with a.client() as c:
        while not dump_dir.exists():
            polls += 1
            if polls % 100 == 0:
                shown = c.get_operation(op)
                assert time.monotonic() < deadline and shown.status == "running", shown
            time.sleep(0.002)
    cut.stdin.close()
    assert cut.wait(10) == 0
    said = a.cli("operation", "wait", op)
    print(said.stdout, said.stderr)
    assert said.returncode != 0
    log = (a.state_dir / "corrald.log").read_text().splitlines()
    print("\n".join(line[:600] for line in log if "undo" in line or "restor" in line
                    or "rolled" in line))
    assert a.instances()["ct4"]["state"] == "running"
    after, pid_after = _counter(a, "ct4")
    assert pid_after == pid and after >= count
    sh("ip", "netns", "exec", a.netns, "nft", "delete table inet crlcut")
    deadline = time.monotonic() + 30
    while "ct4" in b.instances():
        assert time.monotonic() < deadline, "the target kept the reservation"
        time.sleep(0.5)
