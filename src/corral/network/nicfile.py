"""``<instance dir>/nics.json``: the NICs of an instance, where its driver finds them at start.

The network service writes it whenever an instance's NICs change; drivers read it when they
build a guest (LXC ``lxc.net.N.*``, QEMU ``-netdev tap``), so the instance model and the
``Driver`` protocol need not change for networking.
"""

from __future__ import annotations

import ipaddress
import json
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
