from __future__ import annotations

import ipaddress

from corral.domain.network import NetworkSpec, NetworkType, NicSpec
from corral.drivers.lxc.nics import guest_commands

LAN = NetworkSpec(1, "lan", NetworkType.BRIDGED, (ipaddress.ip_network("10.0.0.0/24"),),
                  (ipaddress.ip_address("10.0.0.1"),))


def test_a_bridged_first_nic_gets_its_address_and_the_gateway() -> None:
    nic = NicSpec(7, 0, LAN, "02:c0:00:00:00:01", (ipaddress.ip_address("10.0.0.5"),))
    assert guest_commands(nic) == [
        ["link", "set", "dev", "eth0", "up"],
        ["-4", "addr", "add", "10.0.0.5/24", "dev", "eth0"],
        ["-4", "route", "add", "default", "via", "10.0.0.1", "dev", "eth0"],
    ]


def test_a_later_bridged_nic_gets_no_default_route() -> None:
    nic = NicSpec(7, 2, LAN, "02:c0:00:00:00:01", (ipaddress.ip_address("10.0.0.5"),))
    assert all("default" not in c for c in guest_commands(nic))


def test_a_routed_nic_routes_by_device() -> None:
    routed = NetworkSpec(2, "rt", NetworkType.ROUTED)
    nic = NicSpec(7, 1, routed, "02:c0:00:00:00:01", (ipaddress.ip_address("192.0.2.10"),
                                                      ipaddress.ip_address("2001:db8::10")))
    assert guest_commands(nic)[1:] == [
        ["-4", "addr", "add", "192.0.2.10/32", "dev", "eth1"],
        ["-6", "addr", "add", "2001:db8::10/128", "dev", "eth1"],
        ["-4", "route", "add", "default", "dev", "eth1"],
        ["-6", "route", "add", "default", "dev", "eth1"],
    ]
