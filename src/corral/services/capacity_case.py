"""``corral capacity``: the hosting business case for this host (``domain/capacity.py`` is
the arithmetic; this fills in its inputs).

* The server: this host's CPUs, memory and instance filesystem (``CapacityService``), each
  replaceable to model another server.
* The policy: the host's over-commitment ratios (``corral host policy``), each replaceable.
* The overhead per CT and per VM: what is given, else measured on the instances running
  here, read the way ``stats`` reads them (each driver's batch read, one sample pause for
  all): memory = for a VM what its QEMU holds beyond its guest's RAM (QEMU, TCG, the
  kernel it read: ``drivers/qemu/overhead.py``; the cgroup charge above the guest's size
  was 0 for an idle VM that had not touched its RAM), else the mean cgroup charge above
  the guest's memory size (a CT's charge stays within its limit, so mostly 0), CPU = the mean
  CPU an instance uses now, in CPUs (an idle VM under TCG: ~0.13 here). A kind with no
  running instance has no measured overhead (0, said in ``sources``).

The CLI's ``--from-bench`` reads a ``bench/density.py`` CSV on the client's side
(``domain.capacity.overhead_from_bench``) and hands the figures in as given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from corral.domain.capacity import Amounts, Case, CaseInput, Costs, Ratios, business_case
from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.services.capacity import CapacityService
from corral.services.resources import Usage

CLUSTER_NOTE = "one server (this host); a cluster-wide answer is not built yet"


@dataclass(frozen=True)
class Overrides:
    """What the caller gives; None: this host's own (measured) figure."""

    cpus: float = 1.0
    memory: int = 1024**3
    disk: int = 10 * 1024**3
    costs: Costs = field(default_factory=Costs)
    host_cpus: float | None = None
    host_memory: int | None = None
    host_disk: int | None = None
    cpu_ratio: float | None = None
    memory_ratio: float | None = None
    disk_ratio: float | None = None
    no_ratio: tuple[str, ...] = ()
    """resources whose ratio is 'none' (no maximum) for this question"""
    ct_overhead_memory: int | None = None
    ct_overhead_cpu: float | None = None
    vm_overhead_memory: int | None = None
    vm_overhead_cpu: float | None = None
    ct_count: int | None = None
    vm_count: int | None = None
    measure: bool = True
    """measure the overhead on the running instances where none is given"""


@dataclass(frozen=True)
class Measured:
    memory: float = 0.0
    cpu: float = 0.0
    count: int = 0


@dataclass(frozen=True)
class Answer:
    case: Case
    given: CaseInput
    sources: dict[str, str]
    """'ct'/'vm' -> where that kind's overhead came from; 'host', 'policy' likewise"""
    notes: tuple[str, ...]


def measure(usage: list[Usage],
            vm_memory: Callable[[str], int | None] = lambda _name: None
            ) -> dict[Kind, Measured]:
    """Mean overhead per kind over the running instances' usage (see the module's text);
    ``vm_memory``: what a VM's QEMU holds beyond its guest's RAM, where it can be read
    (else its cgroup charge above its size counts)."""
    found: dict[Kind, Measured] = {}
    for kind in Kind:
        running = [u for u in usage if u.kind is kind and u.state is State.RUNNING]
        if not running:
            continue
        memory = 0
        for u in running:
            beyond = vm_memory(u.instance) if kind is Kind.VM else None
            memory += max(0, u.stats.memory_used - u.resources.memory) if beyond is None \
                else beyond
        cpu = sum(u.cpu_percent for u in running) / 100
        found[kind] = Measured(memory / len(running), cpu / len(running), len(running))
    return found


class CapacityCase:
    def __init__(self, capacity: CapacityService, usage: Callable[[], list[Usage]],
                 vm_memory: Callable[[str], int | None] = lambda _name: None) -> None:
        self.capacity = capacity
        self.usage = usage
        self.vm_memory = vm_memory

    def answer(self, ask: Overrides) -> Answer:
        physical, policy = self.capacity.physical(), self.capacity.policy()
        host = Amounts(
            cpu=float(physical.cpu if ask.host_cpus is None else ask.host_cpus),
            memory=float(physical.memory if ask.host_memory is None else ask.host_memory),
            disk=float(physical.disk if ask.host_disk is None else ask.host_disk))
        ratios = Ratios(
            cpu=policy.cpu if ask.cpu_ratio is None else ask.cpu_ratio,
            memory=policy.memory if ask.memory_ratio is None else ask.memory_ratio,
            disk=policy.disk if ask.disk_ratio is None else ask.disk_ratio)
        if ask.no_ratio:
            ratios = replace(ratios, **{r: None for r in ask.no_ratio})
        sources = {
            "host": "given" if None not in (ask.host_cpus, ask.host_memory, ask.host_disk)
            else "this host" + (" (some given)" if any(
                v is not None for v in (ask.host_cpus, ask.host_memory, ask.host_disk))
                else ""),
            "policy": "this host's policy" + (" (some given)" if any(
                v is not None for v in (ask.cpu_ratio, ask.memory_ratio, ask.disk_ratio))
                or ask.no_ratio else ""),
        }
        wanted = ask.measure and None in (ask.ct_overhead_memory, ask.ct_overhead_cpu,
                                          ask.vm_overhead_memory, ask.vm_overhead_cpu)
        measured = measure(self.usage(), self.vm_memory) if wanted else {}
        overheads = {}
        for kind, memory, cpu in ((Kind.CT, ask.ct_overhead_memory, ask.ct_overhead_cpu),
                                  (Kind.VM, ask.vm_overhead_memory, ask.vm_overhead_cpu)):
            got = measured.get(kind)
            if memory is not None and cpu is not None:
                sources[kind.value] = "given"
            elif got is not None:
                sources[kind.value] = (f"measured on {got.count} running "
                                       f"{kind.value.upper()}{'s' if got.count > 1 else ''}"
                                       + (" (some given)" if (memory, cpu) != (None, None)
                                          else ""))
            else:
                sources[kind.value] = ("not measured (none running)" if ask.measure
                                       else "none") + (" (some given)" if (memory, cpu) !=
                                                       (None, None) else "")
            got = got or Measured()
            overheads[kind] = Amounts(cpu=got.cpu if cpu is None else cpu,
                                      memory=got.memory if memory is None else memory)
        given = CaseInput(host=host, size=Amounts(ask.cpus, ask.memory, ask.disk),
                          ratios=ratios, ct_overhead=overheads[Kind.CT],
                          vm_overhead=overheads[Kind.VM], costs=ask.costs,
                          ct_count=ask.ct_count, vm_count=ask.vm_count)
        return Answer(business_case(given), given, sources, (CLUSTER_NOTE,))
