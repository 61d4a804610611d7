"""Network labs for system tests: a "host" namespace (where Corral's network code acts), guest
namespaces wired to it by veth pairs, and a "world" namespace behind an uplink.

Nothing here touches the real host's network: every device, rule and qdisc lives in a namespace
the lab made, and ``close`` deletes the namespaces (and everything in them).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from corral.host.net import NetHost

TRAFFIC = str(Path(__file__).with_name("traffic.py"))


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def in_ns(ns: str, *argv: str, check: bool = True) -> str:
    return sh("ip", "netns", "exec", ns, *argv, check=check)


@dataclass
class Lab:
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.host_ns = self.netns("h")
        self.host = NetHost(self.host_ns)
        in_ns(self.host_ns, "ip", "link", "set", "lo", "up")

    def netns(self, role: str) -> str:
        name = f"crltest-{role}-{self.tag}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        return name

    def guest(self, role: str, host_ifname: str, mac: str, cidrs: list[str],
              routes: list[list[str]] | None = None) -> str:
        """A namespace acting as a guest: its eth0 is the peer of ``host_ifname`` (host ns)."""
        ns = self.netns(role)
        peer = f"p{secrets.token_hex(4)}"
        self.host.add_veth(host_ifname, peer)
        self.host.move_to_netns(peer, ns, "eth0")
        in_ns(ns, "ip", "link", "set", "lo", "up")
        in_ns(ns, "ip", "link", "set", "eth0", "address", mac)
        in_ns(ns, "ip", "link", "set", "eth0", "up")
        for cidr in cidrs:
            in_ns(ns, "ip", "addr", "add", cidr, "dev", "eth0", "nodad")
        for route in routes or []:
            in_ns(ns, "ip", "route", "add", *route)
        return ns

    def world(self, uplink: str, cidrs: list[str], routes: list[list[str]] | None = None) -> str:
        """A namespace at the far end of ``uplink`` (a veth end in the host ns)."""
        ns = self.netns("w")
        peer = f"w{secrets.token_hex(4)}"
        self.host.add_veth(uplink, peer)
        self.host.move_to_netns(peer, ns, "eth0")
        self.host.up(uplink)
        in_ns(ns, "ip", "link", "set", "lo", "up")
        in_ns(ns, "ip", "link", "set", "eth0", "up")
        for cidr in cidrs:
            in_ns(ns, "ip", "addr", "add", cidr, "dev", "eth0", "nodad")
        for route in routes or []:
            in_ns(ns, "ip", "route", "add", *route)
        return ns

    def ping(self, ns: str, address: str, count: int = 1, timeout: int = 2) -> bool:
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, TRAFFIC, "ping", address, str(count),
             str(timeout)],
            capture_output=True, check=False, timeout=30,
        )
        return proc.returncode == 0

    def server(self, ns: str, port: int, bind: str = "0.0.0.0") -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, TRAFFIC, "serve", str(port), bind],
            stdout=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return proc

    def sender(self, ns: str, address: str, port: int, amount: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, TRAFFIC, "send", address, str(port),
             amount], stdout=subprocess.PIPE, text=True,
        )

    @staticmethod
    def result(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, float]:
        out, _ = proc.communicate(timeout=timeout)
        data: dict[str, float] = json.loads(out.strip().splitlines()[-1])
        return data

    def transfer(self, src: str, dst: str, address: str, amount: int,
                 port: int = 5201) -> dict[str, float]:
        server = self.server(dst, port)
        try:
            self.result(self.sender(src, address, port, str(amount)))
        finally:
            got = self.result(server)
        return got

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()


def can_run() -> str:
    """Why these tests cannot run here ('' if they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft", "tc"):
        if subprocess.run(["which", tool], capture_output=True, check=False).returncode:
            return f"'{tool}' is not installed"
    return ""
