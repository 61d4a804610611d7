"""Traffic classes, bandwidth rules and accounting counters of the network service.

They are the part of networking that is about *traffic* rather than links: named IP ranges,
per-instance guarantees and maximums per range, and the nftables counters read back per
instance. ``NetworkService`` takes them in as a mixin, so callers keep one service object;
the rules are made real by its ``apply``, which renders everything in one pass.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from corral.domain.errors import Conflict, InvalidInput, NotFound
from corral.domain.network import Direction, TrafficClass, parse_rate
from corral.network.classes import parse_class
from corral.network.nftables import FAMILIES, parse_counter_name
from corral.network.realise import NetworkBackend
from corral.services.instances import InstanceService
from corral.state.netstore import NetworkStore


@dataclass(frozen=True)
class TrafficRow:
    instance: str
    instance_id: int
    traffic_class: str
    direction: Direction
    packets: int
    bytes: int


class TrafficMixin:
    """Classes, bandwidth and counters; needs the attributes ``NetworkService`` sets."""

    store: NetworkStore
    backend: NetworkBackend
    instances: InstanceService
    _apply_lock: threading.RLock

    if TYPE_CHECKING:  # provided by NetworkService
        def apply(self) -> None: ...

        def _instance_name(self, instance_id: int) -> str: ...

    def list_classes(self) -> list[TrafficClass]:
        return self.store.list_classes()

    def set_class(self, definition: str) -> TrafficClass:
        cls = parse_class(definition)
        with self._apply_lock:
            self.store.put_class(cls)
            self.apply()
        return cls

    def delete_class(self, name: str) -> None:
        with self._apply_lock:
            in_use = [r for r in self.store.list_bandwidth() if r.traffic_class == name]
            if in_use:
                raise Conflict(f"traffic class '{name}' has bandwidth rules; remove them first")
            self.store.delete_class(name)
            self.apply()

    def set_bandwidth(self, instance_ref: str, traffic_class: str, direction: str,
                      rate: str, ceil: str | None) -> None:
        rec = self.instances.store.get_instance(instance_ref)
        if traffic_class not in {c.name for c in self.store.list_classes()}:
            raise NotFound(f"no traffic class '{traffic_class}' (corral network class set)")
        directions = list(Direction) if direction == "both" else [self._direction(direction)]
        guarantee = parse_rate(rate, "rate")
        maximum = parse_rate(ceil, "ceil") if ceil else guarantee
        if maximum < guarantee:
            raise InvalidInput(f"ceil {ceil} is below the guarantee {rate}")
        with self._apply_lock:
            before = self.store.list_bandwidth(rec.id)
            for each in directions:
                self.store.put_bandwidth(rec.id, traffic_class, each, guarantee, maximum)
            try:
                self.apply()
            except BaseException:
                self.store.delete_bandwidth(rec.id)
                for rule in before:
                    self.store.put_bandwidth(rule.instance_id, rule.traffic_class,
                                             rule.direction, rule.rate, rule.ceil)
                raise

    def clear_bandwidth(self, instance_ref: str, traffic_class: str | None = None) -> None:
        rec = self.instances.store.get_instance(instance_ref)
        with self._apply_lock:
            self.store.delete_bandwidth(rec.id, traffic_class)
            self.apply()

    def list_bandwidth(self, instance_ref: str | None = None) -> list[tuple[str, object]]:
        rules = self.store.list_bandwidth(
            None if instance_ref is None else self.instances.store.get_instance(instance_ref).id
        )
        return [(self._instance_name(r.instance_id), r) for r in rules]

    @staticmethod
    def _direction(text: str) -> Direction:
        try:
            return Direction(text)
        except ValueError:
            raise InvalidInput(f"direction '{text}' is not one of: in, out, both") from None

    # Accounting -------------------------------------------------------------------------
    def _current_counters(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Kernel values where the kernel has them, the last saved ones otherwise."""
        saved = self.store.load_counters()
        live = self.backend.counters()
        merged: dict[str, dict[str, tuple[int, int]]] = {}
        for family in FAMILIES:
            values = dict(saved.get(family, {}))
            for name, value in live.get(family, {}).items():
                if value[1] >= values.get(name, (0, 0))[1]:
                    values[name] = value
            merged[family] = values
        return merged

    def _save_counters(self, counters: dict[str, dict[str, tuple[int, int]]]) -> None:
        known = {r.id for r in self.instances.store.list_instances()}
        for family, values in counters.items():
            rows = {}
            for name, (packets, octets) in values.items():
                parsed = parse_counter_name(name)
                if parsed is not None and parsed[0] in known:
                    rows[name] = (packets, octets, *parsed)
            self.store.save_counters(family, rows)

    def traffic(self, instance_ref: str | None = None) -> list[TrafficRow]:
        with self._apply_lock:
            counters = self._current_counters()
            self._save_counters(counters)
        wanted = None
        if instance_ref is not None:
            wanted = self.instances.store.get_instance(instance_ref).id
        totals: dict[tuple[int, str, Direction], tuple[int, int]] = {}
        for values in counters.values():
            for name, (packets, octets) in values.items():
                parsed = parse_counter_name(name)
                if parsed is None or (wanted is not None and parsed[0] != wanted):
                    continue
                p, b = totals.get(parsed, (0, 0))
                totals[parsed] = (p + packets, b + octets)
        names = {r.id: r.name for r in self.instances.store.list_instances()}
        return [TrafficRow(names[i], i, c, d, p, b)
                for (i, c, d), (p, b) in sorted(totals.items()) if i in names]


def metrics_text(rows: list[TrafficRow]) -> str:
    """Prometheus exposition of the traffic counters."""
    lines = [
        "# HELP corral_traffic_bytes_total Bytes per instance, traffic class and direction.",
        "# TYPE corral_traffic_bytes_total counter",
    ]
    lines += [f'corral_traffic_bytes_total{{instance="{r.instance}",class="{r.traffic_class}",'
              f'direction="{r.direction.value}"}} {r.bytes}' for r in rows]
    lines += [
        "# HELP corral_traffic_packets_total Packets per instance, traffic class and direction.",
        "# TYPE corral_traffic_packets_total counter",
    ]
    lines += [f'corral_traffic_packets_total{{instance="{r.instance}",class="{r.traffic_class}",'
              f'direction="{r.direction.value}"}} {r.packets}' for r in rows]
    return "\n".join(lines) + "\n"
