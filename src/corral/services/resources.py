"""Live resource changes (`corral set`) and usage figures (`corral stats`, `top`, /metrics).

A change is validated, checked against the over-commitment policy, persisted, and then
handed to the driver, which applies it live where the runtime allows and says per key when
it takes effect. Every start re-applies the persisted set (the drivers build the runtime
from ``spec.resources``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import CorralError, InvalidInput
from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.domain.resources import Resources, apply_settings, parse_cpu_list
from corral.domain.sizes import format_size
from corral.drivers.base import AppliedChange, InstanceStats
from corral.drivers.qemu import overhead as qemu_overhead
from corral.host.netcounters import byte_counters
from corral.services.capacity import CapacityService
from corral.services.events import EventBus
from corral.services.instances import InstanceService
from corral.state.store import InstanceRecord

ONLINE_CPUS = Path("/sys/devices/system/cpu/online")
log = logging.getLogger("corral.resources")
SAMPLE_GAP = 0.25  # seconds between two samples when there is no recent previous one
FRESH = 90.0  # a previous sample younger than this gives the CPU % since then (the
# history sampler's once a minute counts: stats/top/metrics after it need no pause)


def host_cpus() -> tuple[int, ...]:
    try:
        return parse_cpu_list(ONLINE_CPUS.read_text())
    except (OSError, InvalidInput):
        return ()


def check_kind_rules(rec: InstanceRecord, old: Resources, new: Resources) -> None:
    """What no runtime can do, refused before anything changes."""
    if new.disk < old.disk:
        raise InvalidInput(
            f"disk cannot shrink ({format_size(old.disk)} -> {format_size(new.disk)}): "
            "filesystems and partitions inside would be cut off"
        )
    if rec.kind is Kind.VM and new.pids is not None:
        raise InvalidInput("pids applies to containers only (a VM's kernel has its own)")
    if new.cpu_pin is not None and new.cpu_pin != old.cpu_pin:
        present = host_cpus()
        missing = sorted(set(parse_cpu_list(new.cpu_pin)) - set(present)) if present else []
        if missing:
            raise InvalidInput(
                f"cpu_pin {new.cpu_pin} names CPUs this host does not have online "
                f"({','.join(map(str, missing))}); online: {ONLINE_CPUS.read_text().strip()}"
            )


@dataclass(frozen=True)
class Usage:
    """One instance's figures at ``time``: the driver's counters plus network and rates.

    ``state`` is the instance's lifecycle state as ``list`` and ``info`` show it (the same
    view), so a suspended instance is "suspended" in stats, top and /metrics too, although
    its runtime still holds memory and counters (``stats.running``)."""

    instance: str
    kind: Kind
    state: State
    time: float
    stats: InstanceStats
    cpu_percent: float  # percent of one CPU since the previous sample
    net_rx_bytes: int
    net_tx_bytes: int
    resources: Resources


class ResourceService:
    def __init__(
        self, instances: InstanceService, capacity: CapacityService, events: EventBus,
        nic_devices: Callable[[str], list[str]] = lambda _ref: [],
        all_nic_devices: Callable[[], dict[int, list[str]]] = dict,
    ) -> None:
        self.instances = instances
        self.capacity = capacity
        self.events = events
        self.nic_devices = nic_devices
        self.all_nic_devices = all_nic_devices
        """Host interface names of every instance's NICs by id (one query for all)."""
        self._samples: dict[int, tuple[float, int]] = {}
        self._samples_lock = threading.Lock()

    # Changes ------------------------------------------------------------------------------
    def set(self, ref: str, settings: dict[str, str]) -> tuple[InstanceRecord, AppliedChange]:
        if not settings:
            raise InvalidInput("nothing to set: give key=value pairs (e.g. cpu_limit=50)")
        rec = self.instances.store.get_instance(ref)
        old = rec.resources
        new = apply_settings(old, settings)
        check_kind_rules(rec, old, new)
        locks = self.instances.ops.locks
        token = f"set-{uuid.uuid4()}"
        locks.acquire(rec.name, token, "set")
        try:
            with self.capacity.admit(new, old):
                self.instances.store.set_resources(rec.id, new)
            spec = self.instances.spec(self.instances.store.get_instance(str(rec.id)))
            try:
                applied = self.instances.driver(rec.kind).apply_resources(spec, old, new)
            except BaseException:
                self.instances.store.set_resources(rec.id, old)  # nothing half-changed
                raise
        finally:
            locks.release(rec.name, token)
        self.events.publish(
            "instance.resources", instance=rec.name,
            changes={c.key: c.applied.value for c in applied.changes},
        )
        return self.instances.store.get_instance(str(rec.id)), applied

    # Usage --------------------------------------------------------------------------------
    def _net(self, rec: InstanceRecord) -> tuple[int, int]:
        rx, tx = _nic_bytes(self.nic_devices(str(rec.id)))
        return rx, tx

    def usage(self, ref: str) -> Usage:
        rec = self.instances.store.get_instance(ref)
        state = self.instances.view(rec).state
        driver = self.instances.driver(rec.kind)
        spec = self.instances.spec(rec)
        now, stats = time.monotonic(), driver.stats(spec)
        with self._samples_lock:
            previous = self._samples.get(rec.id)
        if stats.running and _stale(previous, now):
            previous = (now, stats.cpu_ns)
            time.sleep(SAMPLE_GAP)
            now, stats = time.monotonic(), driver.stats(spec)
        rx, tx = self._net(rec)
        return self._usage(rec, state, now, stats, previous, rx, tx)

    def _usage(self, rec: InstanceRecord, state: State, now: float, stats: InstanceStats,
               previous: tuple[float, int] | None, rx: int, tx: int) -> Usage:
        percent = 0.0
        if stats.running and previous is not None and now > previous[0]:
            delta = max(0, stats.cpu_ns - previous[1])
            percent = round(delta / ((now - previous[0]) * 1e9) * 100, 1)
        with self._samples_lock:
            self._samples[rec.id] = (now, stats.cpu_ns)
        return Usage(rec.name, rec.kind, state, time.time(), stats, percent, rx, tx,
                     rec.resources)

    def _stats_all(self, records: list[InstanceRecord]) -> tuple[float, dict[int, InstanceStats]]:
        found: dict[int, InstanceStats] = {}
        specs = self.instances.specs(records) if records else []
        for kind in {rec.kind for rec in records}:
            try:
                driver = self.instances.driver(kind)
                found.update(driver.stats_many([s for s in specs if s.kind is kind]))
            except Exception as exc:  # one broken runtime must not hide the others
                log.warning("usage of the %s instances failed: %s", kind.value, exc)
        return time.monotonic(), found

    def running_counters(self) -> dict[int, tuple[InstanceStats, int, int]]:
        """Every running instance's counters and its NICs' (rx, tx) bytes by id: one batch
        read per driver, no CPU % and no pause (the history sampler makes its own rates)."""
        now, stats = self._stats_all(self.instances.store.list_instances())
        devices = self.all_nic_devices()
        found = {}
        with self._samples_lock:  # the next stats/top/scrape's CPU % needs no pause
            self._samples.update({iid: (now, each.cpu_ns) for iid, each in stats.items()
                                  if each.running})
        for iid, each in stats.items():
            if not each.running:
                continue
            rx, tx = _nic_bytes(devices.get(iid, []))
            found[iid] = (each, rx, tx)
        return found

    def _cpu_all(self, records: list[InstanceRecord]) -> tuple[float, dict[int, int]]:
        found: dict[int, int] = {}
        specs = self.instances.specs(records)
        for kind in {rec.kind for rec in records}:
            try:
                driver = self.instances.driver(kind)
                found.update(driver.cpu_times([s for s in specs if s.kind is kind]))
            except Exception as exc:  # one broken runtime must not hide the others
                log.warning("CPU time of the %s instances failed: %s", kind.value, exc)
        return time.monotonic(), found

    def vm_memory_overhead(self, name: str) -> int | None:
        """What running VM ``name``'s QEMU holds beyond its guest's RAM (PSS;
        ``drivers/qemu/overhead.py``); None where that cannot be read (not a QEMU of this
        host: the fake driver, another member's instance, stopped)."""
        try:
            rec = self.instances.store.get_instance(name)
            if rec.kind is not Kind.VM:
                return None
            pid = self.instances.driver(Kind.VM).status(self.instances.spec(rec)).pid
        except CorralError:
            return None
        return None if pid is None else qemu_overhead.overhead(pid)

    def usage_all(self, pause: bool = True) -> list[Usage]:
        """Every instance's usage: the state of all as ``list`` says it and their counters,
        each one batch read per driver; when a running instance has no recent sample, one
        pause for all of them (not one per instance) -- unless ``pause`` is False (/metrics:
        a scrape never waits; its CPU % is since the previous sample, 0 without one, and
        ``corral_instance_cpu_seconds_total`` is the counter to take rates of)."""
        views = self.instances.list_all()
        records = [view.record for view in views]
        states = {view.record.id: view.state for view in views}
        with self._samples_lock:
            previous = {rec.id: self._samples.get(rec.id) for rec in records}
        now = time.monotonic()
        up = (State.RUNNING, State.SUSPENDED)
        stale = [rec for rec in records
                 if states[rec.id] in up and _stale(previous[rec.id], now)]
        if stale and pause:  # the first sample: CPU time only (one read each), then one pause
            now, first = self._cpu_all(stale)
            previous.update({i: (now, ns) for i, ns in first.items()})
            time.sleep(SAMPLE_GAP)
        now, stats = self._stats_all(records)
        devices = self.all_nic_devices()
        found = []
        for rec in records:
            if rec.id not in stats:
                continue
            rx, tx = _nic_bytes(devices.get(rec.id, []))
            found.append(self._usage(rec, states[rec.id], now, stats[rec.id],
                                     previous[rec.id], rx, tx))
        return found


def _nic_bytes(devices: list[str]) -> tuple[int, int]:
    """(rx, tx) bytes as the instance sees them, summed over its NICs' host interfaces."""
    rx = tx = 0
    for ifname in devices:
        host_rx, host_tx = byte_counters(ifname)
        rx += host_tx  # what the host sent into the instance's NIC
        tx += host_rx
    return rx, tx


def _stale(previous: tuple[float, int] | None, now: float) -> bool:
    """Whether a CPU % needs a new first sample: none, too old, or too close to now."""
    return previous is None or now - previous[0] > FRESH or now - previous[0] < 0.05


def sample(value: float) -> str:
    """A Prometheus sample value: integers exactly (a byte counter keeps every digit), floats
    (percentages, seconds) at full precision, never the 6 significant digits of ``:g``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**63:
        return str(int(value))
    return repr(value)


def metrics_text(rows: list[Usage]) -> str:
    """Prometheus text exposition of the usage figures."""
    series: list[tuple[str, str, str, Callable[[Usage], float]]] = [
        ("corral_instance_up", "gauge",
         "1 if the instance is running (0 when stopped, suspended or in error).",
         lambda u: 1 if u.state is State.RUNNING else 0),
        ("corral_instance_cpu_seconds_total", "counter", "CPU time used.",
         lambda u: u.stats.cpu_ns / 1e9),
        ("corral_instance_cpu_percent", "gauge", "CPU use in percent of one CPU.",
         lambda u: u.cpu_percent),
        ("corral_instance_vcpus", "gauge", "CPUs online in the instance.",
         lambda u: u.stats.vcpus),
        ("corral_instance_memory_used_bytes", "gauge", "Memory in use.",
         lambda u: u.stats.memory_used),
        ("corral_instance_memory_bytes", "gauge", "Memory the instance has (limit/balloon).",
         lambda u: u.stats.memory_total),
        ("corral_instance_disk_used_bytes", "gauge", "Bytes allocated to the root disk.",
         lambda u: u.stats.disk_used),
        ("corral_instance_disk_size_bytes", "gauge", "Size of the root disk.",
         lambda u: u.stats.disk_size),
        ("corral_instance_io_read_bytes_total", "counter", "Bytes read from block devices.",
         lambda u: u.stats.io_read_bytes),
        ("corral_instance_io_write_bytes_total", "counter", "Bytes written to block devices.",
         lambda u: u.stats.io_write_bytes),
        ("corral_instance_network_receive_bytes_total", "counter", "Bytes received.",
         lambda u: u.net_rx_bytes),
        ("corral_instance_network_transmit_bytes_total", "counter", "Bytes sent.",
         lambda u: u.net_tx_bytes),
        ("corral_instance_oom_kills_total", "counter", "Processes the OOM killer ended.",
         lambda u: u.stats.oom_kills),
    ]
    lines: list[str] = []
    for name, kind, text, value in series:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for u in rows:
            labels = f'instance="{u.instance}",type="{u.kind.value}"'
            lines.append(f"{name}{{{labels}}} {sample(value(u))}")
    return "\n".join(lines + state_series(rows)) + "\n"


def state_series(rows: list[Usage]) -> list[str]:
    """``corral_instance_state``: one series per lifecycle state, 1 for the instance's own
    (the state-set convention of kube-state-metrics: a query or alert can name any state)."""
    name = "corral_instance_state"
    lines = [f"# HELP {name} The instance's lifecycle state (1 for the state it is in).",
             f"# TYPE {name} gauge"]
    for u in rows:
        labels = f'instance="{u.instance}",type="{u.kind.value}"'
        lines += [f'{name}{{{labels},state="{s.value}"}} {1 if s is u.state else 0}'
                  for s in State]
    return lines


def capacity_metrics_text(report: dict[str, dict[str, float | int | None]]) -> str:
    lines = [
        "# HELP corral_host_physical Physical amount (cpu: CPUs, memory/disk: bytes).",
        "# TYPE corral_host_physical gauge",
    ]
    lines += [f'corral_host_physical{{resource="{r}"}} {sample(v["physical"])}'
              for r, v in report.items() if v["physical"] is not None]
    lines += ["# HELP corral_host_allocated Amount allocated to instances.",
              "# TYPE corral_host_allocated gauge"]
    lines += [f'corral_host_allocated{{resource="{r}"}} {sample(v["allocated"])}'
              for r, v in report.items() if v["allocated"] is not None]
    return "\n".join(lines) + "\n"
