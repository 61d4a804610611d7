"""``<instance dir>/nics.json``: the NICs of an instance, where its driver finds them at start.

The network service writes it whenever an instance's NICs change; drivers read it when they
build a guest (LXC ``lxc.net.N.*``, QEMU ``-netdev tap``), so the instance model and the
``Driver`` protocol need not change for networking.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any

from corral.domain.network import NetworkSpec, NetworkType, NicSpec

NICS_FILE = "nics.json"


def _network_dict(spec: NetworkSpec) -> dict[str, Any]:
    return {
        "id": spec.id, "name": spec.name, "type": spec.type.value,
        "subnets": [str(s) for s in spec.subnets], "gateways": [str(g) for g in spec.gateways],
        "uplink": spec.uplink, "vlan": spec.vlan, "link_rate": spec.link_rate,
    }


def write_nics(directory: Path, nics: list[NicSpec]) -> None:
    if not directory.is_dir():
        return
    data = [{
        "instance_id": n.instance_id, "index": n.index, "mac": n.mac,
        "addresses": [str(a) for a in n.addresses], "antispoof": n.antispoof,
        "network": _network_dict(n.network),
    } for n in nics]
    tmp = directory / (NICS_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(directory / NICS_FILE)


def read_addresses(directory: Path) -> list[str]:
    """The addresses Corral assigned to an instance's NICs (no prefix length), in NIC order.

    A plain file read, cheap enough for every row of ``corral list``; a missing or unreadable
    file means no assigned addresses.
    """
    try:
        data = json.loads((directory / NICS_FILE).read_text())
    except (OSError, ValueError):
        return []
    found: list[str] = []
    if not isinstance(data, list):
        return found
    for item in sorted((i for i in data if isinstance(i, dict)), key=lambda i: i.get("index", 0)):
        for address in item.get("addresses", []):
            text = str(address).split("/", 1)[0]
            if text not in found:
                found.append(text)
    return found


def read_nics(directory: Path) -> list[NicSpec]:
    try:
        data = json.loads((directory / NICS_FILE).read_text())
    except FileNotFoundError:
        return []
    found = []
    for item in data:
        net = item["network"]
        spec = NetworkSpec(
            id=net["id"], name=net["name"], type=NetworkType(net["type"]),
            subnets=tuple(ipaddress.ip_network(s) for s in net["subnets"]),
            gateways=tuple(ipaddress.ip_address(g) for g in net["gateways"]),
            uplink=net["uplink"], vlan=net["vlan"], link_rate=net["link_rate"],
        )
        found.append(NicSpec(
            instance_id=item["instance_id"], index=item["index"], network=spec, mac=item["mac"],
            addresses=tuple(ipaddress.ip_address(a) for a in item["addresses"]),
            antispoof=item["antispoof"],
        ))
    return found


class AssignedAddresses:
    """``read_addresses`` of many instances, each file parsed again only when it changed
    (its inode, size or modification time): ``list`` of a thousand stats each file and
    parses none of the unchanged ones."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {}

    def get(self, directory: str) -> tuple[str, ...]:
        path = f"{directory}/{NICS_FILE}"
        try:
            st = os.stat(path)
        except OSError:
            self._seen.pop(path, None)
            return ()
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        seen = self._seen.get(path)
        if seen is not None and seen[0] == key:
            return seen[1]
        found = tuple(read_addresses(Path(directory)))
        self._seen[path] = (key, found)
        return found
