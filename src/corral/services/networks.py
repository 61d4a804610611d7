"""Networks and NICs: validate, store, realise (traffic classes, bandwidth and accounting
come in from ``services/traffic.py``).

The service follows instances through the event bus (started, stopped, deleted), so the
instance service needs no knowledge of networks. Everything it puts on the host is replaced
whole and idempotently (``apply``), which is also how a restarted daemon re-adopts it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import Conflict, CorralError, InvalidInput, NotFound, Unsupported
from corral.domain.lifecycle import State
from corral.domain.names import validate_name
from corral.domain.network import (
    MAX_NICS,
    Direction,
    IPAddress,
    NetworkSpec,
    NetworkType,
    NicSpec,
    parse_address,
    parse_network,
    parse_rate,
    validate_ifname,
)
from corral.network import ipam
from corral.network.nftables import FilterInput
from corral.network.nicfile import write_nics
from corral.network.realise import NetworkBackend, require_kernel_features
from corral.services.events import EventBus
from corral.services.instances import InstanceService
from corral.services.traffic import TrafficMixin, TrafficRow, metrics_text
from corral.state.netstore import NetworkStore
from corral.state.store import InstanceRecord

__all__ = ["NetworkService", "TrafficRow", "backend_for", "metrics_text"]  # the last two: callers

log = logging.getLogger("corral.networks")
DEFAULT_LINK_RATE = "1gbit"
_PLUG_STATES = (State.RUNNING.value, State.STOPPED.value)  # what plugs or unplugs NICs


@dataclass(frozen=True)
class NicRequest:
    """A NIC for a new instance made from another (restore --as, clone)."""

    index: int
    network: str
    antispoof: bool = True
    keep: tuple[str, ...] = ()
    """Addresses to keep where they are free in the network (else: fresh from its IPAM)."""


class NetworkService(TrafficMixin):
    def __init__(self, store: NetworkStore, backend: NetworkBackend, instances: InstanceService,
                 events: EventBus) -> None:
        self.store = store
        self.backend = backend
        self.instances = instances
        self.events = events
        self._apply_lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # Networks ---------------------------------------------------------------------------
    def create_network(
        self, name: str, type_: str, subnets: list[str], gateways: list[str] | None = None,
        uplink: str | None = None, vlan: int | None = None, link_rate: str | None = None,
        pools: list[str] | None = None,
    ) -> NetworkSpec:
        validate_name(name, "network")
        kind = NetworkType.parse(type_)
        nets = tuple(parse_network(s) for s in subnets)
        gws = tuple(parse_address(g, "gateway") for g in gateways or [])
        if uplink is not None:
            validate_ifname(uplink, "uplink")
        if kind is NetworkType.VLAN:
            if uplink is None or vlan is None or not 1 <= vlan <= 4094:
                raise InvalidInput("a vlan network needs --uplink and --vlan 1..4094")
        elif vlan is not None:
            raise InvalidInput("--vlan applies to networks of type vlan only")
        if kind is NetworkType.NAT:
            if not nets:
                raise InvalidInput("a nat network needs a private --subnet")
            if not gws:
                gws = tuple(parse_address(str(n.network_address + 1)) for n in nets)
        if kind is NetworkType.ROUTED and gws:
            raise InvalidInput("a routed network's gateway is the host itself; omit --gateway")
        for gateway in gws:
            if not any(gateway.version == n.version and gateway in n for n in nets):
                raise InvalidInput(f"gateway {gateway} is in none of the subnets")
        pool_ranges = tuple(self._parse_pool(p, nets) for p in pools or [])
        spec = NetworkSpec(0, name, kind, nets, gws, uplink, vlan,
                           parse_rate(link_rate or DEFAULT_LINK_RATE, "link rate"), pool_ranges)
        require_kernel_features(spec)  # refused before anything is stored or made
        with self._apply_lock:
            self._refuse_overlaps(nets)
            spec = self.store.insert_network(spec)
            try:
                self.backend.ensure_network(spec)
                self.apply()
            except BaseException:
                with contextlib.suppress(Exception):
                    self.backend.remove_network(spec)
                self.store.delete_network(spec.id)
                raise
        self.events.publish("network.created", name=name, type=kind.value)
        return spec

    def _refuse_overlaps(self, nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
                         ) -> None:
        """Two networks with overlapping subnets would route, allocate and account the same
        addresses twice: refused, naming the network already holding them."""
        for i, subnet in enumerate(nets):
            for other in nets[:i]:
                if subnet.version == other.version and subnet.overlaps(other):
                    raise InvalidInput(f"subnet {subnet} overlaps subnet {other} given with it")
        for network in self.store.list_networks():
            for subnet in nets:
                for theirs in network.subnets:
                    if subnet.version == theirs.version and subnet.overlaps(theirs):
                        raise Conflict(
                            f"subnet {subnet} overlaps {theirs} of network '{network.name}'"
                        )

    @staticmethod
    def _parse_pool(text: str, nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
                    ) -> tuple[IPAddress, IPAddress]:
        first, sep, last = text.partition("-")
        if not sep:
            raise InvalidInput(f"pool '{text}' must look like FIRST-LAST")
        a, b = parse_address(first, "pool start"), parse_address(last, "pool end")
        if a.version != b.version or int(a) > int(b):
            raise InvalidInput(f"pool '{text}' is not an ascending range of one IP version")
        if nets and not any(a in n and b in n for n in nets if n.version == a.version):
            raise InvalidInput(f"pool '{text}' is not inside a subnet of the network")
        return a, b

    def list_networks(self) -> list[NetworkSpec]:
        return self.store.list_networks()

    def get_network(self, ref: str) -> NetworkSpec:
        return self.store.get_network(ref)

    def delete_network(self, ref: str) -> None:
        spec = self.store.get_network(ref)
        users = self.store.list_nics(network_id=spec.id)
        if users:
            names = sorted({self._instance_name(n.instance_id) for n in users})
            raise Conflict(
                f"network '{spec.name}' still has NICs of: {', '.join(names)}; remove them first"
            )
        with self._apply_lock:
            self.backend.remove_network(spec)
            self.store.delete_network(spec.id)
            self.apply()
        self.events.publish("network.deleted", name=spec.name)

    def _instance_name(self, instance_id: int) -> str:
        try:
            return self.instances.store.get_instance(str(instance_id)).name
        except NotFound:
            return str(instance_id)

    # NICs -------------------------------------------------------------------------------
    def list_nics(self, instance_ref: str | None = None) -> list[tuple[str, NicSpec]]:
        if instance_ref is None:
            return [(self._instance_name(n.instance_id), n) for n in self.store.list_nics()]
        rec = self.instances.store.get_instance(instance_ref)
        return [(rec.name, n) for n in self.store.list_nics(rec.id)]

    def _addresses(self, spec: NetworkSpec, requested: list[str]) -> tuple[IPAddress, ...]:
        used = self.store.used_addresses(spec.id)
        chosen: list[IPAddress] = []
        if not requested:
            versions = sorted({n.version for n in spec.subnets})
            if not versions:
                raise InvalidInput(
                    f"network '{spec.name}' has no subnet to allocate from: give --ip"
                )
            requested = [f"auto{v}" for v in versions]
        for item in requested:
            if item in ("auto", "auto4", "auto6"):
                version = 6 if item == "auto6" else 4
                address = ipam.allocate(spec, version, [*used, *chosen])
            else:
                address = parse_address(item, "--ip")
                ipam.check_static(spec, address, [*used, *chosen])
            chosen.append(address)
        return tuple(chosen)

    def add_nic(self, instance_ref: str, network_ref: str, ips: list[str] | None = None,
                mac: str | None = None, antispoof: bool = True) -> NicSpec:
        rec = self.instances.store.get_instance(instance_ref)
        spec = self.store.get_network(network_ref)
        holder = self.instances.ops.locks.holder(rec.name)
        if holder is not None:
            raise Conflict(f"'{rec.name}' is busy with operation {holder}; try again after it")
        with self._apply_lock:
            existing = self.store.list_nics(rec.id)
            if len(existing) >= MAX_NICS:
                raise Conflict(
                    f"'{rec.name}' already has {MAX_NICS} NICs, the most an instance can have"
                )
            taken = {n.index for n in existing}
            index = next(i for i in range(MAX_NICS) if i not in taken)
            the_mac = ipam.normalise_mac(mac) if mac else ipam.generate_mac(self.store.used_macs())
            nic = NicSpec(rec.id, index, spec, the_mac, self._addresses(spec, ips or []),
                          antispoof)
            self.store.insert_nic(nic)
            try:
                self._write_file(rec)
                if self._running(rec):
                    hotplug = self.instances.driver(rec.kind).hooks().nics
                    if hotplug is None:
                        raise Unsupported(
                            f"the {rec.kind.value} driver cannot hot-add NICs; stop "
                            f"'{rec.name}' first"
                        )
                    hotplug.attach_nic(self.instances.spec(rec), nic)
                    self.backend.plug(nic)
                self.apply()
            except BaseException:
                self.store.delete_nic(rec.id, index)
                self._write_file(rec)
                with contextlib.suppress(Exception):
                    self.backend.unplug(nic, delete_device=True)
                    self.apply()
                raise
        self.events.publish("nic.added", instance=rec.name, index=index, network=spec.name)
        return nic

    def furnish(self, rec: InstanceRecord, nics: Sequence[NicRequest],
                rules: Sequence[tuple[str, Direction, int, int]]) -> list[NicSpec]:
        """Give a new, stopped instance (made by restore or clone, whose operation holds its
        lock: no busy check) its NICs, each with a new MAC, and its bandwidth rules
        (class, direction, rate, ceil): all or nothing."""
        made: list[NicSpec] = []
        with self._apply_lock:
            try:
                for want in nics:
                    spec = self.store.get_network(want.network)
                    nic = NicSpec(rec.id, want.index, spec,
                                  ipam.generate_mac(self.store.used_macs()),
                                  self._addresses(spec, self._kept(spec, want.keep)),
                                  want.antispoof)
                    self.store.insert_nic(nic)
                    made.append(nic)
                for cls, direction, rate, ceil in rules:
                    self.store.put_bandwidth(rec.id, cls, direction, rate, ceil)
                self._write_file(rec)
                self.apply()
            except BaseException:
                self.store.delete_instance(rec.id)  # its NICs and rules: it has nothing else
                with contextlib.suppress(Exception):
                    self._write_file(rec)
                    self.apply()
                raise
        return made

    def _kept(self, spec: NetworkSpec, keep: Sequence[str]) -> list[str]:
        """What ``_addresses`` is asked for: the ``keep`` addresses still free in the network,
        a fresh one of each IP version they leave out (none asked: fresh ones)."""
        used = self.store.used_addresses(spec.id)
        kept: list[IPAddress] = []
        for text in keep:
            try:
                address = parse_address(text, "address")
                ipam.check_static(spec, address, [*used, *kept])
            except CorralError:
                continue
            kept.append(address)
        if not kept:
            return []
        missing = sorted({n.version for n in spec.subnets} - {a.version for a in kept})
        return [str(a) for a in kept] + [f"auto{v}" for v in missing]

    def remove_nic(self, instance_ref: str, index: int) -> None:
        rec = self.instances.store.get_instance(instance_ref)
        nic = next((n for n in self.store.list_nics(rec.id) if n.index == index), None)
        if nic is None:
            raise NotFound(f"'{rec.name}' has no NIC {index}")
        with self._apply_lock:
            if self._running(rec):
                hotplug = self.instances.driver(rec.kind).hooks().nics
                if hotplug is None:
                    raise Unsupported(
                        f"the {rec.kind.value} driver cannot hot-remove NICs; stop "
                        f"'{rec.name}' first"
                    )
                hotplug.detach_nic(self.instances.spec(rec), nic)
            self.backend.unplug(nic, delete_device=True)
            self.store.delete_nic(rec.id, index)
            self._write_file(rec)
            self.apply()
        self.events.publish("nic.removed", instance=rec.name, index=index)

    def _running(self, rec: InstanceRecord) -> bool:
        return self.instances.get(str(rec.id)).state in (State.RUNNING, State.SUSPENDED)

    def _write_file(self, rec: InstanceRecord) -> None:
        write_nics(self.instances.spec(rec).directory, self.store.list_nics(rec.id))

    # Realisation ------------------------------------------------------------------------
    def apply(self) -> None:
        """Make the host's rulesets and HTB trees match the database (idempotent)."""
        with self._apply_lock:
            instances = {r.id for r in self.instances.store.list_instances()}
            nics = [n for n in self.store.list_nics() if n.instance_id in instances]
            classes = self.store.list_classes()
            counters = self._current_counters()
            nat = tuple(n for n in self.store.list_networks() if n.type is NetworkType.NAT)
            self.backend.apply_filters(FilterInput(tuple(nics), tuple(classes), counters, nat))
            self._save_counters(counters)
            rules = [r for r in self.store.list_bandwidth() if r.instance_id in instances]
            for network in self.store.list_networks():
                mine = [n for n in nics if n.network.id == network.id]
                members = {n.instance_id for n in mine}
                self.backend.apply_shaping(
                    network, [r for r in rules if r.instance_id in members], mine, classes
                )

    def plug_instance(self, instance_id: int) -> None:
        for nic in self.store.list_nics(instance_id):
            try:
                self.backend.plug(nic)
            except CorralError as exc:
                log.warning("NIC %s of instance %s: %s", nic.index, instance_id, exc.message)

    def unplug_instance(self, instance_id: int) -> None:
        for nic in self.store.list_nics(instance_id):
            with contextlib.suppress(CorralError):
                self.backend.unplug(nic, delete_device=True)

    def forget_instance(self, instance_id: int) -> None:
        with self._apply_lock:
            self.unplug_instance(instance_id)
            self.store.delete_instance(instance_id)
            self.apply()

    def reconcile(self) -> None:
        """At daemon start: networks exist, NICs of running guests plugged, rules in place."""
        known = {r.id: r for r in self.instances.store.list_instances()}
        for network in self.store.list_networks():
            try:
                self.backend.ensure_network(network)
            except CorralError as exc:
                log.error("network %s cannot be realised: %s", network.name, exc.message)
        for nic in self.store.list_nics():
            if nic.instance_id not in known:
                log.warning("dropping NICs of vanished instance %s", nic.instance_id)
                self.forget_instance(nic.instance_id)
        for rec in known.values():
            if self.store.list_nics(rec.id):
                self._write_file(rec)
                if self._running(rec):
                    self.plug_instance(rec.id)
        try:
            self.apply()
        except CorralError as exc:
            log.error("network rules could not be applied: %s", exc.message)

    # Following instances ----------------------------------------------------------------
    def start(self) -> None:
        self.reconcile()
        sub = self.events.subscribe(_followed)

        def follow() -> None:
            try:
                while not self._stop.is_set():
                    event = sub.get(timeout=0.5)
                    if event is not None:
                        self._on_event(event.type, event.instance, event.data)
            finally:
                sub.close()

        self._thread = threading.Thread(target=follow, name="networks", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _on_event(self, type_: str, instance: str | None, data: dict[str, object]) -> None:
        try:
            if type_ == "instance.deleted" and isinstance(data.get("id"), int):
                self.forget_instance(int(str(data["id"])))
            elif type_ in ("instance.state", "instance.created") and instance is not None:
                if type_ == "instance.state" and data.get("state") not in _PLUG_STATES:
                    return  # starting, stopping…: nothing to do, and no query on a start's path
                with_nics = self.store.instance_with_nics(instance)
                if with_nics is None:
                    return
                rec = self.instances.store.get_instance(str(with_nics))
                state = data.get("state")
                if state == State.RUNNING.value or (type_ == "instance.created"
                                                    and self._running(rec)):
                    with self._apply_lock:
                        self.plug_instance(rec.id)
                        self.apply()
                elif state == State.STOPPED.value:
                    with self._apply_lock:
                        self.unplug_instance(rec.id)
        except CorralError as exc:
            log.warning("network follow-up of %s %s failed: %s", type_, instance, exc.message)
        except Exception:
            log.exception("network follow-up of %s %s crashed", type_, instance)


def _followed(type_: str, data: dict[str, object]) -> bool:
    """The events ``_on_event`` acts on (it is not woken for the others)."""
    if type_ == "instance.state":
        return data.get("state") in _PLUG_STATES
    return type_ in ("instance.created", "instance.deleted")


def backend_for(driver_mode: str, state_dir: Path) -> NetworkBackend:
    from corral.network.nftables import table_for
    from corral.network.realise import HostBackend, RecordingBackend

    if driver_mode == "fake":
        return RecordingBackend(state_dir / "network")
    return HostBackend(table=table_for(str(state_dir.resolve())))
