"""The addresses Corral assigned to instances' NICs, all in one query (what ``list`` shows
beside the runtime's): NIC order, no prefix length, instances without NICs left out."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from corral.domain.network import NetworkSpec, NetworkType, NicSpec
from corral.state.database import Database
from corral.state.netstore import NetworkStore


def test_assigned_addresses_of_all_instances_and_of_one(tmp_path: Path) -> None:
    store = NetworkStore(Database.open(tmp_path / "corral.db"))
    net = store.insert_network(NetworkSpec(
        0, "lan", NetworkType.BRIDGED, subnets=(ipaddress.ip_network("10.1.0.0/24"),)))
    assert store.assigned_addresses() == {}

    def nic(instance: int, index: int, *addresses: str) -> None:
        mac = f"52:54:00:00:{instance % 100:02d}:{index:02d}"
        store.insert_nic(NicSpec(instance, index, net, mac,
                                 tuple(ipaddress.ip_address(a) for a in addresses)))

    nic(101, 1, "10.1.0.3")
    nic(101, 0, "10.1.0.2", "fd00::2")
    nic(102, 0)  # a NIC without an address
    nic(103, 0, "10.1.0.9")
    assert store.assigned_addresses() == {101: ("10.1.0.2", "fd00::2", "10.1.0.3"),
                                          103: ("10.1.0.9",)}
    assert store.assigned_addresses(101) == {101: ("10.1.0.2", "fd00::2", "10.1.0.3")}
    assert store.assigned_addresses(102) == {}
    store.delete_nic(101, 0)
    assert store.assigned_addresses(101) == {101: ("10.1.0.3",)}
