"""Bandwidth guarantees under contention, on every path a traffic class covers.

Two instances with different guarantees (HTB ``rate``) on one link (``link_rate``) send or
receive at the same time over one path; each must get at least its guarantee and together no
more than the link. Paths: instance -> instance and back on one bridge, instance <-> host,
instance <-> world behind the uplink, and instance <-> host on a NAT and on a routed network.
Guests are network namespaces whose eth0 is the peer of the NIC's host-side veth (what an LXC
container is, seen from the host); the "host" is a namespace too, so nothing touches the real
host's network. Prints a table; asserts nothing.

    .venv/bin/python bench/shaping.py [--seconds 4] [--link 40] [--rates 25,5]
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' network lab

from corral.domain.network import (
    BandwidthRule,
    Direction,
    NetworkSpec,
    NetworkType,
    NicSpec,
)
from corral.network.classes import parse_class
from corral.network.realise import HostBackend
from tests.system.net.lab import Lab, can_run

MBIT = 10**6
CLASSES = [parse_class("local=10.0.0.0/8,192.168.0.0/16"), parse_class("world=0.0.0.0/0")]
Flow = tuple[str, str, str]  # source namespace, destination namespace, destination address


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def contend(lab: Lab, flows: list[Flow], seconds: float, port: int) -> list[float]:
    """Run the flows at once for ``seconds``; Mbit/s each received."""
    servers = [lab.server(dst, port + i) for i, (_, dst, _) in enumerate(flows)]
    senders = [lab.sender(src, address, port + i, f"s{seconds}")
               for i, (src, _, address) in enumerate(flows)]
    for sender in senders:
        lab.result(sender, timeout=seconds + 60)
    return [got["bytes"] * 8 / got["seconds"] / MBIT
            for got in (lab.result(s, timeout=60) for s in servers)]


def rules(cls: str, rates: tuple[int, int], link: int) -> list[BandwidthRule]:
    made = []
    for number, (instance, rate) in enumerate(zip((101, 102), rates, strict=True)):
        for k, direction in enumerate(Direction):
            made.append(BandwidthRule(1 + 2 * number + k, instance, cls, direction, rate, link))
    return made


def bridged(lab: Lab, link: int, rates: tuple[int, int], seconds: float) -> list[list[str]]:
    backend = HostBackend(lab.host)
    world = lab.world("up0", ["203.0.113.1/24"], [["10.1.0.0/24", "dev", "eth0"]])
    net = NetworkSpec(1, "lan", NetworkType.BRIDGED, (ipaddress.ip_network("10.1.0.0/24"),),
                      uplink="up0", link_rate=link)
    backend.ensure_network(net)
    lab.host.add_address(str(net.bridge), "10.1.0.200/24")
    nics = [NicSpec(101 + i, 0, net, f"02:c0:00:00:01:0{i + 1}", (_ip(f"10.1.0.{5 + i}"),))
            for i in range(3)]
    guests = []
    for i, nic in enumerate(nics):
        guests.append(lab.guest(f"g{i}", nic.host_ifname, nic.mac, [f"{nic.addresses[0]}/24"],
                                [["203.0.113.0/24", "dev", "eth0"]]))
        backend.plug(nic)
    a, b, c = guests
    shaped = rules("local", rates, link) + [
        BandwidthRule(10 + r.id, r.instance_id, "world", r.direction, r.rate, r.ceil)
        for r in rules("world", rates, link)]
    backend.apply_shaping(net, shaped, nics, CLASSES)
    host = lab.host_ns
    paths: dict[str, list[Flow]] = {
        "bridged: instance -> instance": [(a, c, "10.1.0.7"), (b, c, "10.1.0.7")],
        "bridged: instance <- instance": [(c, a, "10.1.0.5"), (c, b, "10.1.0.6")],
        "bridged: instance -> host": [(a, host, "10.1.0.200"), (b, host, "10.1.0.200")],
        "bridged: host -> instance": [(host, a, "10.1.0.5"), (host, b, "10.1.0.6")],
        "bridged: instance -> world": [(a, world, "203.0.113.1"), (b, world, "203.0.113.1")],
        "bridged: world -> instance": [(world, a, "10.1.0.5"), (world, b, "10.1.0.6")],
    }
    return [row(name, contend(lab, flows, seconds, 5500 + 10 * i), rates, link)
            for i, (name, flows) in enumerate(paths.items())]


def host_only(lab: Lab, kind: NetworkType, link: int, rates: tuple[int, int],
              seconds: float) -> list[list[str]]:
    """Two instances and the host on a NAT or routed network (no uplink)."""
    backend = HostBackend(lab.host)
    if kind is NetworkType.NAT:
        net = NetworkSpec(3, "priv", kind, (ipaddress.ip_network("192.168.9.0/24"),),
                          (_ip("192.168.9.1"),), link_rate=link)
        addresses, host_address = ["192.168.9.5", "192.168.9.6"], "192.168.9.1"
    else:
        net = NetworkSpec(2, "pub", kind, link_rate=link)
        addresses, host_address = ["198.51.100.5", "198.51.100.6"], "169.254.0.1"
    backend.ensure_network(net)
    nics = [NicSpec(101 + i, 0, net, f"02:c0:00:00:0{net.id}:0{i + 1}", (_ip(address),))
            for i, address in enumerate(addresses)]
    guests = []
    for i, nic in enumerate(nics):
        if kind is NetworkType.NAT:
            guests.append(lab.guest(f"{kind.value}{i}", nic.host_ifname, nic.mac,
                                    [f"{addresses[i]}/24"]))
        else:
            guests.append(lab.guest(f"{kind.value}{i}", nic.host_ifname, nic.mac,
                                    [f"{addresses[i]}/32"], [["169.254.0.1", "dev", "eth0"]]))
        backend.plug(nic)
    shaped = rules("local", rates, link) + [
        BandwidthRule(10 + r.id, r.instance_id, "world", r.direction, r.rate, r.ceil)
        for r in rules("world", rates, link)]
    backend.apply_shaping(net, shaped, nics, CLASSES)
    host = lab.host_ns
    a, b = guests
    paths: dict[str, list[Flow]] = {
        f"{kind.value}: instance -> host": [(a, host, host_address), (b, host, host_address)],
        f"{kind.value}: host -> instance": [(host, a, addresses[0]), (host, b, addresses[1])],
    }
    return [row(name, contend(lab, flows, seconds, 5600 + 10 * i), rates, link)
            for i, (name, flows) in enumerate(paths.items())]


def row(name: str, got: list[float], rates: tuple[int, int], link: int) -> list[str]:
    held = all(g >= 0.95 * r / MBIT for g, r in zip(got, rates, strict=True))
    held = held and sum(got) <= 1.1 * link / MBIT
    return [name, f"{got[0]:.2f}", f"{got[1]:.2f}", f"{sum(got):.2f}", "yes" if held else "NO"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each contest")
    parser.add_argument("--link", type=int, default=40, help="link_rate in Mbit/s")
    parser.add_argument("--rates", default="25,5", help="the two guarantees in Mbit/s")
    args = parser.parse_args()
    reason = can_run()
    if reason:
        sys.exit(f"cannot run here: {reason}")
    first, second = (int(x) * MBIT for x in args.rates.split(","))
    rates, link = (first, second), args.link * MBIT
    table: list[list[str]] = []
    for build in ("bridged", NetworkType.NAT, NetworkType.ROUTED):
        lab = Lab()
        try:
            if build == "bridged":
                table += bridged(lab, link, rates, args.seconds)
            else:
                assert isinstance(build, NetworkType)
                table += host_only(lab, build, link, rates, args.seconds)
        finally:
            lab.close()
    head = ["path (two instances at once)", f"A Mbit/s (>= {first // MBIT})",
            f"B Mbit/s (>= {second // MBIT})", f"sum (<= {args.link})", "held"]
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
    for line in [head, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))


if __name__ == "__main__":
    main()
