"""The hosting business case (``corral capacity``): how many VPS of one size fit a server as
containers, as VMs and as mixes, and what each earns. Pure arithmetic, no I/O: the service
(``services/capacity_case.py``) hands in the host's size, its over-commitment policy and the
overhead it measured.

An instance of size S needs, of each resource r (cpu, memory, disk)::

    need_r = S_r / ratio_r + overhead_r

``ratio_r`` is the host policy's over-commitment ratio (``corral host policy``; None: no
maximum, the sold amount then costs nothing of that resource): the share of a sold amount
that is assumed to be in use. ``overhead_r`` is what the runtime itself takes on the host
besides the guest's own (measured: a VM's QEMU beyond its guest RAM, its idle CPU under
TCG), never shared. A server of size H holds ``floor(H_r / need_r)`` of them by r; the
smallest of the three is the count and r is the *binding* resource.

Money per server and month: server + network, power (``watts`` around the clock at the kWh
price), management; per VPS and month: the price it sells for and acquisition/support.
With n VPS on a server::

    cost per VPS   = server cost / n
    gross per VPS  = price - cost per VPS
    net per VPS    = gross - acquisition/support
    per server     = n x each of those (revenue n x price)

The seed's table (server + network $200, 400 W at $0.15/kWh = $43.2, management $50;
price $50, acquisition/support $15) follows: 10 VMs -> $29.3 cost, $20.7 gross, $5.7 net
per VPS; 25 CTs -> $11.7, $38.3, $23.3 (tests/unit/domain/test_capacity.py).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

from corral.domain.errors import InvalidInput

RESOURCES = ("cpu", "memory", "disk")
HOURS_PER_MONTH = 720.0  # 30 days: the seed's $43 of power for a 400 W server at $0.15/kWh
MAX_MIXES = 6
MIB = 1024**2


@dataclass(frozen=True)
class Amounts:
    """CPUs (may be fractional: an idle VM's share of one), memory and disk bytes."""

    cpu: float = 0.0
    memory: float = 0.0
    disk: float = 0.0

    def get(self, resource: str) -> float:
        value: float = getattr(self, resource)
        return value


@dataclass(frozen=True)
class Ratios:
    """The over-commitment policy: maximum allocated/physical per resource (None: none)."""

    cpu: float | None = 8.0
    memory: float | None = 4.0
    disk: float | None = 10.0

    def get(self, resource: str) -> float | None:
        value: float | None = getattr(self, resource)
        return value


@dataclass(frozen=True)
class Costs:
    """Dollars per month (the seed's figures by default)."""

    server_network: float = 200.0
    """server and network, per server"""
    watts: float = 400.0
    """the server's mean power draw"""
    kwh_price: float = 0.15
    management: float = 50.0
    """per server"""
    price: float = 50.0
    """what one VPS sells for"""
    acquisition: float = 15.0
    """acquisition and support, per VPS"""
    hours: float = HOURS_PER_MONTH

    @property
    def power(self) -> float:
        return self.watts / 1000 * self.hours * self.kwh_price

    @property
    def per_server(self) -> float:
        return self.server_network + self.power + self.management

    def validate(self) -> None:
        for name in ("server_network", "watts", "kwh_price", "management", "price",
                     "acquisition"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidInput(f"{name.replace('_', ' ')} must be a number >= 0, "
                                   f"not {value}")
        if not self.hours > 0:
            raise InvalidInput(f"hours per month must be > 0, not {self.hours}")


@dataclass(frozen=True)
class Money:
    """Dollars per month of one VPS or of one server."""

    revenue: float
    cost: float
    gross: float
    net: float


@dataclass(frozen=True)
class Fit:
    """One way to fill a server: ``cts`` containers and ``vms`` VMs of the size."""

    label: str
    cts: int
    vms: int
    binding: str
    """the resource that runs out first ("" when the count was given, not fitted)"""
    per_vps: Money
    per_server: Money
    used: Amounts = field(default_factory=Amounts)
    """of the server, as a fraction per resource"""

    @property
    def count(self) -> int:
        return self.cts + self.vms


@dataclass(frozen=True)
class CaseInput:
    host: Amounts
    size: Amounts
    ratios: Ratios
    ct_overhead: Amounts
    vm_overhead: Amounts
    costs: Costs = field(default_factory=Costs)
    ct_count: int | None = None
    """take this many CTs per server instead of fitting them"""
    vm_count: int | None = None


@dataclass(frozen=True)
class Case:
    ct: Fit
    vm: Fit
    mixes: tuple[Fit, ...]
    ct_need: Amounts
    vm_need: Amounts
    costs: Costs


def need(size: Amounts, ratios: Ratios, overhead: Amounts) -> Amounts:
    """What one instance of ``size`` takes of a server under the policy."""
    def one(resource: str) -> float:
        ratio = ratios.get(resource)
        shared = 0.0 if ratio is None else size.get(resource) / ratio
        return shared + overhead.get(resource)
    return Amounts(*(one(r) for r in RESOURCES))


def fit(host: Amounts, per: Amounts) -> tuple[int, str]:
    """How many of ``per`` fit ``host``, and the resource that binds."""
    best: tuple[int, str] | None = None
    for resource in RESOURCES:
        wanted = per.get(resource)
        if wanted <= 0:
            continue
        count = math.floor(host.get(resource) / wanted + 1e-9)
        if best is None or count < best[0]:
            best = (count, resource)
    if best is None:
        raise InvalidInput("nothing limits how many fit: the size and the overhead are all 0 "
                           "and the policy has no ratio")
    return max(0, best[0]), best[1]


def economics(costs: Costs, count: int) -> tuple[Money, Money]:
    """(per VPS, per server) with ``count`` VPS on a server; a server with none earns
    nothing and costs it all."""
    server = costs.per_server
    if count <= 0:
        zero = Money(0.0, 0.0, 0.0, 0.0)
        return zero, Money(0.0, server, -server, -server)
    cost = server / count
    gross = costs.price - cost
    net = gross - costs.acquisition
    per_vps = Money(costs.price, cost, gross, net)
    return per_vps, Money(costs.price * count, server + costs.acquisition * count,
                          gross * count, net * count)


def _used(host: Amounts, cts: int, vms: int, ct_need: Amounts, vm_need: Amounts) -> Amounts:
    def one(resource: str) -> float:
        total = host.get(resource)
        taken = cts * ct_need.get(resource) + vms * vm_need.get(resource)
        return taken / total if total > 0 else 0.0
    return Amounts(*(one(r) for r in RESOURCES))


def _binding(host: Amounts, cts: int, vms: int, ct_need: Amounts, vm_need: Amounts) -> str:
    """The resource a mix leaves least room in (relative to what one more CT needs)."""
    used = _used(host, cts, vms, ct_need, vm_need)
    return max(RESOURCES, key=lambda r: (used.get(r), ct_need.get(r) > 0))


def _fit(label: str, costs: Costs, host: Amounts, cts: int, vms: int, binding: str,
         ct_need: Amounts, vm_need: Amounts) -> Fit:
    per_vps, per_server = economics(costs, cts + vms)
    return Fit(label, cts, vms, binding, per_vps, per_server,
               _used(host, cts, vms, ct_need, vm_need))


def mixes(host: Amounts, ct_need: Amounts, vm_need: Amounts, most_vms: int,
          costs: Costs, steps: int = MAX_MIXES) -> tuple[Fit, ...]:
    """Servers holding some VMs and as many CTs as still fit: VM counts spread evenly
    between none and all (ends excluded: those are the pure rows)."""
    if most_vms < 2:
        return ()
    counts = sorted({round(most_vms * i / steps) for i in range(1, steps)} - {0, most_vms})
    found = []
    for vms in counts:
        left = Amounts(*(max(0.0, host.get(r) - vms * vm_need.get(r)) for r in RESOURCES))
        cts, _ = fit(left, ct_need)
        found.append(_fit("mix", costs, host, cts, vms,
                          _binding(host, cts, vms, ct_need, vm_need), ct_need, vm_need))
    return tuple(found)


def business_case(given: CaseInput) -> Case:
    """CTs only, VMs only and mixes of one size on one server, with their money."""
    given.costs.validate()
    for name, amounts in (("host", given.host), ("size", given.size),
                          ("CT overhead", given.ct_overhead),
                          ("VM overhead", given.vm_overhead)):
        for resource in RESOURCES:
            value = amounts.get(resource)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidInput(f"{name} {resource} must be >= 0, not {value}")
    for resource in RESOURCES:
        ratio = given.ratios.get(resource)
        if ratio is not None and not ratio > 0:
            raise InvalidInput(f"{resource} over-commitment ratio must be > 0, not {ratio}")
    for what, count in (("CT", given.ct_count), ("VM", given.vm_count)):
        if count is not None and count < 0:
            raise InvalidInput(f"{what} count per server must be >= 0, not {count}")
    ct_need = need(given.size, given.ratios, given.ct_overhead)
    vm_need = need(given.size, given.ratios, given.vm_overhead)
    rows = []
    for label, kind_need, count in (("ct", ct_need, given.ct_count),
                                    ("vm", vm_need, given.vm_count)):
        fitted, binding = fit(given.host, kind_need)
        n = fitted if count is None else count
        cts, vms = (n, 0) if label == "ct" else (0, n)
        rows.append(_fit(label, given.costs, given.host, cts, vms,
                         binding if count is None else "", ct_need, vm_need))
    ct, vm = rows
    found = () if given.ct_count is not None or given.vm_count is not None else mixes(
        given.host, ct_need, vm_need, vm.vms, given.costs)
    return Case(ct, vm, found, ct_need, vm_need, given.costs)


def overhead_from_rows(rows: list[tuple[int, int, float]]) -> tuple[float | None, float | None]:
    """Per-CT and per-VM amounts from totals measured at several (cts, vms) counts: the
    least-squares ``total = cts x a + vms x b`` (each row: cts, vms, total), clamped at 0.
    A kind that never ran is None; InvalidInput when both ran but always in one proportion
    (their shares cannot be told apart)."""
    sxx = sxy = syy = sxt = syt = 0.0
    for cts, vms, total in rows:
        sxx += cts * cts
        sxy += cts * vms
        syy += vms * vms
        sxt += cts * total
        syt += vms * total
    if sxx == 0 and syy == 0:
        raise InvalidInput("the bench rows have no instances")
    if syy == 0:
        return max(0.0, sxt / sxx), None
    if sxx == 0:
        return None, max(0.0, syt / syy)
    det = sxx * syy - sxy * sxy
    if det <= 1e-9 * sxx * syy:
        raise InvalidInput("the bench rows always ran CTs and VMs in one proportion: the "
                           "two kinds' shares cannot be told apart")
    a = (sxt * syy - syt * sxy) / det
    b = (syt * sxx - sxt * sxy) / det
    return max(0.0, a), max(0.0, b)


BENCH_CT_MEMORY = 64 * 1024**2
BENCH_VM_MEMORY = 128 * 1024**2
"""The guest sizes bench/density.py starts (its CSV may name others: ct_memory_mib,
vm_memory_mib)."""


def overhead_from_bench(text: str) -> tuple[Amounts | None, Amounts | None]:
    """Per-CT and per-VM overhead from a ``bench/density.py`` CSV (its text): host memory
    per instance above the guest's memory size, and idle CPU per instance (in CPUs), each
    split between the kinds by ``overhead_from_rows``. None for a kind the bench never ran."""
    reader = csv.DictReader(io.StringIO(text))
    needed = {"cts", "vms", "host_mem_mib_per_inst", "idle_cpu_pct_per_inst"}
    missing = needed - set(reader.fieldnames or ())
    if missing:
        raise InvalidInput(f"not a bench/density.py CSV: no column {', '.join(sorted(missing))}")
    memory_rows, cpu_rows = [], []
    sizes = [float(BENCH_CT_MEMORY), float(BENCH_VM_MEMORY)]
    for number, row in enumerate(reader, start=2):
        try:
            cts, vms = int(float(row["cts"])), int(float(row["vms"]))
            memory = float(row["host_mem_mib_per_inst"]) * MIB
            cpu = float(row["idle_cpu_pct_per_inst"]) / 100
            for index, key in enumerate(("ct_memory_mib", "vm_memory_mib")):
                if row.get(key):
                    sizes[index] = float(row[key]) * MIB
        except (TypeError, ValueError):
            raise InvalidInput(f"bench CSV line {number}: not numbers: {row}") from None
        memory_rows.append((cts, vms, memory * (cts + vms)))
        cpu_rows.append((cts, vms, cpu * (cts + vms)))
    if not memory_rows:
        raise InvalidInput("the bench CSV has no rows")
    memory_ct, memory_vm = overhead_from_rows(memory_rows)
    cpu_ct, cpu_vm = overhead_from_rows(cpu_rows)

    def kind(memory: float | None, cpu: float | None, size: float) -> Amounts | None:
        if memory is None or cpu is None:
            return None
        return Amounts(cpu=cpu, memory=max(0.0, memory - size))

    return kind(memory_ct, cpu_ct, sizes[0]), kind(memory_vm, cpu_vm, sizes[1])
