"""Links, addresses, routes and sysctls through ``ip`` — optionally inside a network namespace.

Every call can be aimed at a namespace (``NetHost("ns")``): system tests build a whole "host"
inside a namespace they own, so nothing they do touches the real host's network.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from corral.domain.errors import HostFailure
from corral.host.run import require_tool, run


@dataclass(frozen=True)
class NetHost:
    netns: str | None = None

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace."""
        if self.netns is None:
            return list(argv)
        return [require_tool("ip", "iproute2"), "netns", "exec", self.netns, *argv]

    def run(self, argv: Sequence[str], *, check: bool = True, input: bytes | None = None,
            timeout: float | None = 60) -> str:
        proc = run(self.argv(argv), check=check, input=input, timeout=timeout)
        return proc.stdout.decode(errors="replace")

    def ip(self, *args: str, check: bool = True) -> str:
        base = [require_tool("ip", "iproute2")]
        if self.netns is not None:
            base += ["-n", self.netns]
        return run([*base, *args], check=check, timeout=30).stdout.decode(errors="replace")

    # Links ------------------------------------------------------------------------------
    def links(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = json.loads(self.ip("-j", "-d", "link", "show") or "[]")
        return found

    def link(self, name: str) -> dict[str, Any] | None:
        text = self.ip("-j", "-d", "link", "show", "dev", name, check=False)
        if not text.strip():
            return None
        found: list[dict[str, Any]] = json.loads(text)
        return found[0] if found else None

    def exists(self, name: str) -> bool:
        return self.link(name) is not None

    def ensure_bridge(self, name: str, mac: str | None = None) -> None:
        if self.link(name) is None:
            self.ip("link", "add", name, "type", "bridge", "stp_state", "0",
                    "forward_delay", "0")
            if mac is not None:
                self.ip("link", "set", "dev", name, "address", mac)
        self.up(name)

    def add_veth(self, host_end: str, peer: str, mac: str | None = None) -> None:
        args = ["link", "add", host_end, "type", "veth", "peer", "name", peer]
        if mac is not None:
            args += ["address", mac]
        self.ip(*args)

    def ensure_tap(self, name: str) -> None:
        """A persistent tap device (QEMU opens it by name); an existing one is reused."""
        if self.link(name) is None:
            self.ip("tuntap", "add", "dev", name, "mode", "tap")

    def ensure_ifb(self, name: str) -> None:
        if self.link(name) is None:
            self.ip("link", "add", name, "type", "ifb")
            self.ip("link", "set", "dev", name, "txqueuelen", "1000")
        self.up(name)

    def add_vlan(self, parent: str, name: str, vlan_id: int) -> None:
        if self.link(name) is None:
            self.ip("link", "add", "link", parent, "name", name, "type", "vlan", "id",
                    str(vlan_id))
        self.up(name)

    def up(self, name: str) -> None:
        self.ip("link", "set", "dev", name, "up")

    def set_master(self, name: str, bridge: str | None) -> None:
        if bridge is None:
            self.ip("link", "set", "dev", name, "nomaster")
        else:
            self.ip("link", "set", "dev", name, "master", bridge)

    def master_of(self, name: str) -> str | None:
        link = self.link(name)
        return None if link is None else link.get("master")

    def delete_link(self, name: str) -> None:
        """Remove ``name`` if it exists (deleting one veth end removes both)."""
        if self.link(name) is not None:
            self.ip("link", "del", "dev", name, check=False)

    def move_to_netns(self, name: str, target: str, new_name: str) -> None:
        """Move ``name`` into the namespace ``target`` (a pid or a named netns), renamed."""
        self.ip("link", "set", "dev", name, "netns", target, "name", new_name)

    # Addresses, routes, neighbours -------------------------------------------------------
    def add_address(self, name: str, cidr: str) -> None:
        self.ip("addr", "replace", cidr, "dev", name)

    def addresses(self, name: str) -> list[str]:
        data = json.loads(self.ip("-j", "addr", "show", "dev", name) or "[]")
        return [f"{a['local']}/{a['prefixlen']}" for d in data for a in d.get("addr_info", [])]

    def replace_route(self, prefix: str, device: str) -> None:
        family = "-6" if ":" in prefix else "-4"
        self.ip(family, "route", "replace", prefix, "dev", device, "proto", "static")

    def delete_route(self, prefix: str, device: str) -> None:
        family = "-6" if ":" in prefix else "-4"
        self.ip(family, "route", "del", prefix, "dev", device, check=False)

    def routes(self, device: str) -> list[str]:
        found: list[str] = []
        for family in ("-4", "-6"):
            data = json.loads(self.ip("-j", family, "route", "show", "dev", device,
                                      check=False) or "[]")
            found += [r["dst"] for r in data if "dst" in r]
        return found

    def add_proxy_neigh(self, address: str, device: str) -> None:
        self.ip("-6", "neigh", "replace", "proxy", address, "dev", device)

    def delete_proxy_neigh(self, address: str, device: str) -> None:
        self.ip("-6", "neigh", "del", "proxy", address, "dev", device, check=False)

    # sysctl -------------------------------------------------------------------------------
    def sysctl(self, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            self.run(["sh", "-c", f"echo {value} > {path}"])
        except HostFailure as exc:
            raise HostFailure(f"cannot set {key}={value}: {exc.message}") from None

    def read_sysctl(self, key: str) -> str:
        return self.run(["cat", "/proc/sys/" + key.replace(".", "/")], check=False).strip()
