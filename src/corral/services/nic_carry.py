"""What a new instance made from another keeps of its networking: NICs and bandwidth rules.

``restore --as`` (from the backup manifest, which records them) and ``clone`` (from the
source's rows) give the new instance a NIC on each network the source had one on (same index,
so the same ``ethN`` in the guest), each with a new MAC and an address from that network's
IPAM, and the source's bandwidth rules. Everything is checked before anything is made: a
network or traffic class that no longer exists refuses the whole operation, naming it (or
``--no-nics`` skips the NICs and their rules). The output says what changed, NIC by NIC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from corral.domain.errors import NotFound
from corral.domain.network import Direction, NicSpec, format_rate
from corral.domain.resources import Resources
from corral.domain.sizes import format_size
from corral.services.networks import NetworkService, NicRequest
from corral.state.store import InstanceRecord

_LIMITS = ("cpu_limit", "cpu_shares", "cpu_pin", "memory_min", "swap", "io_read_bps",
           "io_write_bps", "io_iops", "pids", "max_cpus")
_BYTES = frozenset({"memory_min", "swap", "io_read_bps", "io_write_bps"})


@dataclass(frozen=True)
class OldNic:
    index: int
    network: str
    addresses: tuple[str, ...]
    mac: str
    antispoof: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "network": self.network, "addresses": list(self.addresses),
                "mac": self.mac, "antispoof": self.antispoof}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OldNic:
        return cls(int(data["index"]), str(data["network"]),
                   tuple(str(a) for a in data.get("addresses", [])), str(data.get("mac", "")),
                   bool(data.get("antispoof", True)))


@dataclass(frozen=True)
class OldRule:
    traffic_class: str
    direction: str
    rate: int
    ceil: int

    def to_dict(self) -> dict[str, Any]:
        return {"traffic_class": self.traffic_class, "direction": self.direction,
                "rate": self.rate, "ceil": self.ceil}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OldRule:
        return cls(str(data["traffic_class"]), str(data["direction"]), int(data["rate"]),
                   int(data["ceil"]))


@dataclass(frozen=True)
class Carry:
    """The networking of the source: ``nics`` None when unknown (a manifest from before NICs
    were recorded)."""

    nics: list[OldNic] | None
    rules: list[OldRule] = field(default_factory=list)


def of_instance(networks: NetworkService | None, instance_id: int) -> Carry:
    if networks is None:
        return Carry([], [])
    nics = [OldNic(n.index, n.network.name, tuple(str(a) for a in n.addresses), n.mac,
                   n.antispoof) for n in networks.store.list_nics(instance_id)]
    rules = [OldRule(r.traffic_class, r.direction.value, r.rate, r.ceil)
             for r in networks.store.list_bandwidth(instance_id)]
    return Carry(nics, rules)


def recorded(networks: NetworkService | None, instance_id: int
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What a backup manifest records of an instance's networking."""
    found = of_instance(networks, instance_id)
    return [n.to_dict() for n in found.nics or []], [r.to_dict() for r in found.rules]


def of_manifest(nics: list[dict[str, Any]] | None,
                rules: list[dict[str, Any]] | None) -> Carry:
    if nics is None:
        return Carry(None, [])
    return Carry([OldNic.from_dict(n) for n in nics],
                 [OldRule.from_dict(r) for r in rules or []])


def check(networks: NetworkService | None, carry: Carry, source: str) -> None:
    """Refuse, before anything is made, NICs whose network or rules whose traffic class no
    longer exists."""
    if not carry.nics:
        return
    if networks is None:
        raise NotFound(f"'{source}' has NICs but this daemon keeps no networks: use --no-nics")
    known = {n.name for n in networks.list_networks()}
    for nic in carry.nics:
        if nic.network not in known:
            raise NotFound(f"network '{nic.network}' of {source}'s NIC eth{nic.index} no "
                           "longer exists: create it again, or use --no-nics")
    classes = {c.name for c in networks.list_classes()}
    for rule in carry.rules:
        if rule.traffic_class not in classes:
            raise NotFound(f"traffic class '{rule.traffic_class}' of {source}'s bandwidth "
                           "rules no longer exists: set it again, or use --no-nics")


def place(networks: NetworkService | None, rec: InstanceRecord, carry: Carry,
          keep_addresses: bool) -> list[NicSpec]:
    """The NICs and rules of ``carry`` on the new instance ``rec`` (all or nothing).
    ``keep_addresses``: the source is gone, so its addresses are taken again where free."""
    if not carry.nics or networks is None:
        return []
    wanted = [NicRequest(n.index, n.network, n.antispoof,
                         n.addresses if keep_addresses else ()) for n in carry.nics]
    rules = [(r.traffic_class, Direction(r.direction), r.rate, r.ceil) for r in carry.rules]
    return networks.furnish(rec, wanted, rules)


def report(name: str, carry: Carry | None, made: list[NicSpec], resources: Resources) -> str:
    """What the new instance ``name`` got: each NIC (address and MAC, and what they were),
    the bandwidth rules and the limits kept, one line each, naming the instance (so that
    lines grep well). ``carry`` None: NICs skipped (--no-nics)."""
    parts: list[str] = []
    if carry is None:
        parts.append("NICs not copied (--no-nics)")
    elif carry.nics is None:
        parts.append("the backup holds no NICs")
    elif not carry.nics:
        parts.append("no NICs")
    else:
        old = {n.index: n for n in carry.nics}
        for nic in made:
            before = old[nic.index]
            now = ", ".join(str(a) for a in nic.addresses) or "no address"
            was = ", ".join(before.addresses) or "no address"
            parts.append(f"NIC {nic.guest_ifname} on {nic.network.name}, {now}"
                         + ("" if now == was else f" (was {was})")
                         + f", new MAC {nic.mac} (was {before.mac})")
        if carry.rules:
            parts.append("bandwidth " + ", ".join(
                f"{r.traffic_class} {r.direction} {format_rate(r.rate)}/{format_rate(r.ceil)}"
                for r in carry.rules))
    limits = [f"{k}={_show(k, getattr(resources, k))}" for k in _LIMITS
              if getattr(resources, k) is not None]
    if limits:
        parts.append("limits kept: " + " ".join(limits))
    return "\n".join(f"{name}: {part}" for part in parts)


def _show(key: str, value: object) -> str:
    return format_size(int(str(value))) if key in _BYTES else str(value)
