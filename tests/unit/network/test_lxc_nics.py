"""LXC's lxc.net.N.* lines for Corral NICs (pure rendering)."""

from __future__ import annotations

import ipaddress

from corral.domain.network import NetworkSpec, NetworkType, NicSpec
from corral.drivers.lxc.config import _net_lines

LAN = NetworkSpec(1, "lan", NetworkType.BRIDGED, (ipaddress.ip_network("10.5.0.0/24"),
                                                   ipaddress.ip_network("fd00:5::/64")),
                  (ipaddress.ip_address("10.5.0.1"),))
PUB = NetworkSpec(2, "pub", NetworkType.ROUTED, uplink="up0")


def test_no_nics_means_an_empty_network_namespace() -> None:
    assert _net_lines(()) == ["lxc.net.0.type = empty"]


def test_bridged_and_routed_nics_render_as_veth() -> None:
    nics = (
        NicSpec(101, 0, LAN, "02:c0:00:00:00:01",
                (ipaddress.ip_address("10.5.0.2"), ipaddress.ip_address("fd00:5::100"))),
        NicSpec(101, 3, PUB, "02:c0:00:00:00:02", (ipaddress.ip_address("198.51.100.7"),)),
    )
    lines = _net_lines(nics)
    assert "lxc.net.0.veth.pair = c101n0" in lines
    assert "lxc.net.0.link = cbr1" in lines
    assert "lxc.net.0.ipv4.address = 10.5.0.2/24" in lines
    assert "lxc.net.0.ipv6.address = fd00:5::100/64" in lines
    assert "lxc.net.0.ipv4.gateway = 10.5.0.1" in lines
    assert "lxc.net.1.name = eth3" in lines
    assert "lxc.net.1.hwaddr = 02:c0:00:00:00:02" in lines
    assert "lxc.net.1.ipv4.address = 198.51.100.7/32" in lines
    assert "lxc.net.1.ipv4.gateway = dev" in lines
    assert not any(line.startswith("lxc.net.1.link") for line in lines)
