"""Making networks and NICs real on a host (``HostBackend``), or only on paper
(``RecordingBackend``, used with the fake driver: everything is rendered, nothing applied).

Every step is idempotent — "make it so", never "add one more" — so a restarted daemon re-runs
them all to re-adopt what exists without duplicating a device, route, rule or class.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from corral.domain.errors import HostFailure, InvalidInput, Unsupported
from corral.domain.network import (
    BandwidthRule,
    Direction,
    IPAddress,
    NetworkSpec,
    NetworkType,
    NicSpec,
    TrafficClass,
)
from corral.host import nft, tc
from corral.host.net import NetHost
from corral.host.netfeatures import probe
from corral.network import nftables, shaping

ROUTED_GATEWAY4 = "169.254.0.1"
ROUTED_GATEWAY6 = "fe80::1"


def require_kernel_features(spec: NetworkSpec) -> None:
    """Refuse, naming the missing kernel feature, what this kernel cannot do."""
    if spec.type is NetworkType.VLAN:
        feature = probe("vlan_8021q")
        if not feature.available:
            raise Unsupported(
                f"network type 'vlan' needs the kernel's 802.1Q VLAN support (8021q), "
                f"which this host lacks: {feature.detail}"
            )


class NetworkBackend(Protocol):
    def ensure_network(self, spec: NetworkSpec) -> None: ...

    def remove_network(self, spec: NetworkSpec) -> None: ...

    def plug(self, nic: NicSpec) -> None: ...

    def unplug(self, nic: NicSpec, *, delete_device: bool) -> None: ...

    def apply_filters(self, data: nftables.FilterInput) -> None: ...

    def counters(self) -> dict[str, nftables.CounterValues]: ...

    def apply_shaping(
        self, spec: NetworkSpec, rules: list[BandwidthRule], nics: Sequence[NicSpec],
        classes: list[TrafficClass],
    ) -> None: ...


def _addresses(nics: Sequence[NicSpec]) -> dict[int, tuple[IPAddress, ...]]:
    """Every address of each instance on the network (the guest side of the filters)."""
    found: dict[int, tuple[IPAddress, ...]] = {}
    for nic in nics:
        found[nic.instance_id] = found.get(nic.instance_id, ()) + nic.addresses
    return found


class HostBackend:
    def __init__(self, host: NetHost | None = None, table: str = nftables.TABLE) -> None:
        self.host = host or NetHost()
        self.table = table
        """The nftables tables' name: this daemon's own (``nftables.table_for``)."""

    # Networks ---------------------------------------------------------------------------
    def ensure_network(self, spec: NetworkSpec) -> None:
        require_kernel_features(spec)
        h = self.host
        if spec.uplink is not None and not h.exists(spec.uplink):
            raise InvalidInput(f"uplink '{spec.uplink}' of network '{spec.name}' does not exist")
        if spec.type is NetworkType.ROUTED:
            self._forwarding()
            if spec.uplink is not None:
                h.sysctl(f"net.ipv4.conf.{spec.uplink}.proxy_arp", "1")
                h.sysctl(f"net.ipv6.conf.{spec.uplink}.proxy_ndp", "1")
                with contextlib.suppress(HostFailure):
                    h.sysctl(f"net.ipv4.neigh.{spec.uplink}.proxy_delay", "0")
            return
        bridge = spec.bridge
        assert bridge is not None
        h.ensure_bridge(bridge)
        if spec.type is NetworkType.NAT:
            self._forwarding()
            for gateway in spec.gateways:
                subnet = next(s for s in spec.subnets if gateway in s)
                h.add_address(bridge, f"{gateway}/{subnet.prefixlen}")
        if spec.uplink is not None:
            port = spec.uplink
            if spec.type is NetworkType.VLAN:
                assert spec.vlan is not None
                port = nftables_vlan_device(spec)
                h.add_vlan(spec.uplink, port, spec.vlan)
            if h.master_of(port) != bridge:
                h.set_master(port, bridge)
            h.up(port)

    def _forwarding(self) -> None:
        self.host.sysctl("net.ipv4.ip_forward", "1")
        self.host.sysctl("net.ipv6.conf.all.forwarding", "1")

    def remove_network(self, spec: NetworkSpec) -> None:
        h = self.host
        device = spec.shaping_device
        if device is not None and h.exists(device):
            tc.clear_root(h, device)
            tc.clear_ingress(h, device)
        h.delete_link(spec.ifb)
        h.delete_link(spec.ifb_in)
        if spec.type is NetworkType.VLAN:
            h.delete_link(nftables_vlan_device(spec))
        elif spec.uplink is not None and spec.bridge and h.master_of(spec.uplink) == spec.bridge:
            h.set_master(spec.uplink, None)
        if spec.bridge is not None:
            h.delete_link(spec.bridge)

    # NICs ---------------------------------------------------------------------------------
    def plug(self, nic: NicSpec) -> None:
        """Connect an existing host-side device (veth end or tap) to its network."""
        h = self.host
        dev = nic.host_ifname
        if not h.exists(dev):
            raise HostFailure(f"NIC device '{dev}' does not exist on the host")
        spec = nic.network
        if spec.type is NetworkType.ROUTED:
            h.sysctl(f"net.ipv4.conf.{dev}.proxy_arp", "1")
            with contextlib.suppress(HostFailure):
                h.sysctl(f"net.ipv4.neigh.{dev}.proxy_delay", "0")
            h.add_address(dev, f"{ROUTED_GATEWAY4}/32")
            h.up(dev)
            h.add_address(dev, f"{ROUTED_GATEWAY6}/64")
            for address in nic.addresses:
                h.replace_route(f"{address}/{address.max_prefixlen}", dev)
                if address.version == 6 and spec.uplink is not None:
                    h.add_proxy_neigh(str(address), spec.uplink)
            return
        if h.master_of(dev) != spec.bridge:
            h.set_master(dev, spec.bridge)
        h.up(dev)

    def unplug(self, nic: NicSpec, *, delete_device: bool) -> None:
        h = self.host
        spec = nic.network
        if spec.type is NetworkType.ROUTED:
            for address in nic.addresses:
                h.delete_route(f"{address}/{address.max_prefixlen}", nic.host_ifname)
                if address.version == 6 and spec.uplink is not None:
                    h.delete_proxy_neigh(str(address), spec.uplink)
        if delete_device:
            h.delete_link(nic.host_ifname)

    # Rules ------------------------------------------------------------------------------
    def counters(self) -> dict[str, nftables.CounterValues]:
        return {f: nft.counters(self.host, f, self.table) for f in nftables.FAMILIES}

    def apply_filters(self, data: nftables.FilterInput) -> None:
        nft.apply(self.host, nftables.render(data, self.table))

    def remove_filters(self) -> None:
        nft.apply(self.host, nftables.render_removal(self.table))

    def apply_shaping(
        self, spec: NetworkSpec, rules: list[BandwidthRule], nics: Sequence[NicSpec],
        classes: list[TrafficClass],
    ) -> None:
        """The network's two trees on its IFBs, and every present port of it caught for them
        (see ``network/shaping.py``); with no rule, none of it."""
        h = self.host
        present = {link["ifname"] for link in h.links()}
        ifbs = (spec.ifb, spec.ifb_in)
        if not rules and not present.intersection(ifbs):
            return  # nothing of ours (an earlier layout's tree came with its IFB)
        kinds: dict[str, set[str]] = {}
        for qdisc in tc.qdiscs(h):
            kinds.setdefault(str(qdisc.get("dev")), set()).add(str(qdisc.get("kind")))
        self._clear_old_trees(spec, present, kinds)
        ports = [n.host_ifname for n in nics if n.host_ifname in present]
        caught = {p for p in ports if "clsact" in kinds.get(p, ())}
        if not rules:
            for port in caught:
                tc.clear_clsact(h, port)  # before the IFBs go: mirred to nowhere drops
            for ifb in present.intersection(ifbs):
                h.delete_link(ifb)
            return
        for feature in ("htb", "ifb", "port_redirect"):
            if not probe(feature).available:
                raise Unsupported(f"bandwidth limits need {probe(feature).detail}")
        if not present.issuperset(ifbs):
            caught = set()  # a new IFB: the redirects name devices, so they are made again
        for ifb in ifbs:
            h.ensure_ifb(ifb)
        for plan in shaping.plans(spec, rules, _addresses(nics), classes):
            tc.replace_tree(h, plan.device, plan.commands)
        commands = []
        for port in ports:
            if port not in caught:
                if "clsact" in kinds.get(port, ()):
                    commands.append(f"qdisc del dev {port} clsact")
                commands += shaping.port_commands(spec, port)
        tc.batch(h, commands)

    def _clear_old_trees(self, spec: NetworkSpec, present: set[str],
                         kinds: Mapping[str, set[str]]) -> None:
        """Trees an earlier Corral put on the bridge or uplink (and its IFB redirect)."""
        device = spec.shaping_device
        if device is None or device not in present:
            return
        if "htb" in kinds.get(device, ()):
            tc.clear_root(self.host, device)
        if "ingress" in kinds.get(device, ()):
            tc.clear_ingress(self.host, device)


def nftables_vlan_device(spec: NetworkSpec) -> str:
    from corral.domain.network import vlan_device

    return vlan_device(spec)


class RecordingBackend:
    """Renders everything into files under ``directory``; touches no device (fake driver)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _write(self, name: str, text: str) -> None:
        (self.directory / name).write_text(text)

    def _state(self) -> dict[str, list[str]]:
        path = self.directory / "plugged.json"
        data: dict[str, list[str]] = json.loads(path.read_text()) if path.exists() else {}
        return data

    def _save(self, data: dict[str, list[str]]) -> None:
        self._write("plugged.json", json.dumps(data, indent=1, sort_keys=True))

    def ensure_network(self, spec: NetworkSpec) -> None:
        require_kernel_features(spec)
        data = self._state()
        data.setdefault("networks", [])
        if spec.name not in data["networks"]:
            data["networks"].append(spec.name)
        self._save(data)

    def remove_network(self, spec: NetworkSpec) -> None:
        data = self._state()
        data["networks"] = [n for n in data.get("networks", []) if n != spec.name]
        self._save(data)
        (self.directory / f"tc-{spec.name}.txt").unlink(missing_ok=True)

    def plug(self, nic: NicSpec) -> None:
        data = self._state()
        plugged = data.setdefault("nics", [])
        if nic.host_ifname not in plugged:
            plugged.append(nic.host_ifname)
        self._save(data)

    def unplug(self, nic: NicSpec, *, delete_device: bool) -> None:
        data = self._state()
        data["nics"] = [n for n in data.get("nics", []) if n != nic.host_ifname]
        self._save(data)

    def counters(self) -> dict[str, nftables.CounterValues]:
        path = self.directory / "counters.json"
        if not path.exists():
            return {}
        raw = json.loads(path.read_text())
        return {f: {k: (int(v[0]), int(v[1])) for k, v in c.items()} for f, c in raw.items()}

    def apply_filters(self, data: nftables.FilterInput) -> None:
        self._write("ruleset.nft", nftables.render(data))
        kept: dict[str, dict[str, list[int]]] = {}
        for family in nftables.FAMILIES:
            names = {
                nftables.counter_name(n.instance_id, c.name, d)
                for n in data.nics if nftables.family_of(n.network) == family
                for c in data.classes for d in Direction
            }
            start = data.counters.get(family, {})
            kept[family] = {name: list(start.get(name, (0, 0))) for name in sorted(names)}
        self._write("counters.json", json.dumps(kept, indent=1))

    def apply_shaping(
        self, spec: NetworkSpec, rules: list[BandwidthRule], nics: Sequence[NicSpec],
        classes: list[TrafficClass],
    ) -> None:
        path = self.directory / f"tc-{spec.name}.txt"
        if not rules:
            path.unlink(missing_ok=True)
            return
        text = []
        for plan in shaping.plans(spec, rules, _addresses(nics), classes):
            text += [f"# {plan.device} ({plan.direction.value})", *plan.commands]
        for nic in nics:
            text += [f"# port {nic.host_ifname}", *shaping.port_commands(spec, nic.host_ifname)]
        path.write_text("\n".join(text) + "\n")
