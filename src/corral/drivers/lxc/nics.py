"""NIC hot-plug for running containers: what LXC does at start (``lxc.net.N.*``), done live.

A veth pair is made on the host with the host end named ``c<id>n<i>`` and the peer carrying
the NIC's MAC; the peer is moved into the container's network namespace (found through its
init pid) and renamed ``eth<i>`` in the same ``ip link set … netns <pid> name …`` call;
addresses and routes are set from the host with ``nsenter --net`` and the host's ``ip``, so
the guest needs no tools. Removal deletes the host end, which takes the peer with it.
Gateways follow ``config._net_lines``: routed NICs route by device, otherwise the first NIC
gets the network's gateways; an existing default route is kept.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Protocol

from corral.domain.errors import Conflict, HostFailure
from corral.domain.instance import InstanceSpec
from corral.domain.network import NetworkType, NicSpec
from corral.drivers.base import RuntimeState, RuntimeStatus
from corral.host.net import NetHost
from corral.host.run import require_tool, run


class _Observable(Protocol):
    def status(self, spec: InstanceSpec) -> RuntimeStatus: ...


def _in_netns(pid: int, *args: str, check: bool = True) -> str:
    argv = [require_tool("nsenter", "util-linux"), "--target", str(pid), "--net",
            require_tool("ip", "iproute2"), *args]
    return run(argv, check=check, timeout=30).stdout.decode(errors="replace")


def _has_default(pid: int, family: str) -> bool:
    return bool(_in_netns(pid, family, "route", "show", "default", check=False).strip())


def guest_commands(nic: NicSpec) -> list[list[str]]:
    """The ``ip`` commands (inside the container's netns) that configure ``nic``."""
    dev = nic.guest_ifname
    commands = [["link", "set", "dev", dev, "up"]]
    for address in nic.addresses:
        family = "-6" if address.version == 6 else "-4"
        commands.append([family, "addr", "add", f"{address}/{nic.prefix_of(address)}",
                         "dev", dev])
    if nic.network.type is NetworkType.ROUTED:
        for family, present in (("-4", nic.ipv4), ("-6", nic.ipv6)):
            if present:
                commands.append([family, "route", "add", "default", "dev", dev])
    elif nic.index == 0:
        for gateway in nic.network.gateways:
            family = "-6" if gateway.version == 6 else "-4"
            commands.append([family, "route", "add", "default", "via", str(gateway),
                             "dev", dev])
    return commands


def hot_add(pid: int, nic: NicSpec, host: NetHost | None = None) -> None:
    h = host or NetHost()
    if h.exists(nic.host_ifname):
        h.delete_link(nic.host_ifname)  # left by a crash; the NIC is being made anew
    peer = f"ctmp{secrets.token_hex(4)}"
    h.add_veth(nic.host_ifname, peer, mac=nic.mac)
    try:
        h.move_to_netns(peer, str(pid), nic.guest_ifname)
        bridge = nic.network.bridge
        if bridge is not None:
            h.set_master(nic.host_ifname, bridge)
        h.up(nic.host_ifname)
        for command in guest_commands(nic):
            if command[1:4] == ["route", "add", "default"] and _has_default(pid, command[0]):
                continue
            _in_netns(pid, *command)
    except BaseException:
        with contextlib.suppress(HostFailure):
            h.delete_link(peer)
        h.delete_link(nic.host_ifname)
        raise


class LxcNics:
    """The ``NicHotplug`` hooks of ``LxcDriver`` (its ``Hooks.nics``)."""

    def __init__(self, driver: _Observable) -> None:
        self.driver = driver

    def attach_nic(self, spec: InstanceSpec, nic: NicSpec) -> None:
        status = self.driver.status(spec)
        if status.state not in (RuntimeState.RUNNING, RuntimeState.SUSPENDED) or not status.pid:
            raise Conflict(f"container '{spec.name}' is {status.state.value}; nothing to plug into")
        hot_add(status.pid, nic)

    def detach_nic(self, spec: InstanceSpec, nic: NicSpec) -> None:
        NetHost().delete_link(nic.host_ifname)
