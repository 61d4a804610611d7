"""services/capacity_case: the overhead measured from instances' usage, and the inputs the
business case gets (this host's, the policy's, the caller's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.domain.capacity import Costs
from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.domain.resources import Resources
from corral.drivers.base import InstanceStats
from corral.services.capacity import Amounts as HostAmounts
from corral.services.capacity import CapacityService
from corral.services.capacity_case import CapacityCase, Overrides, measure
from corral.services.resources import Usage

MiB = 1024**2
GiB = 1024**3


def usage(kind: Kind, state: State, used: int, size: int, cpu: float) -> Usage:
    return Usage(f"{kind.value}-{used}", kind, state, 0.0,
                 InstanceStats(running=state is State.RUNNING, memory_used=used), cpu, 0, 0,
                 Resources(memory=size))


def test_measure_averages_the_charge_above_the_size_and_the_cpu_per_running_kind() -> None:
    got = measure([
        usage(Kind.VM, State.RUNNING, 264 * MiB, 128 * MiB, 13.0),
        usage(Kind.VM, State.RUNNING, 300 * MiB, 128 * MiB, 15.0),
        usage(Kind.VM, State.STOPPED, 0, 128 * MiB, 0.0),  # not counted
        usage(Kind.CT, State.RUNNING, 2 * MiB, 64 * MiB, 0.2),  # within its size: 0
    ])
    assert got[Kind.VM].count == 2
    assert got[Kind.VM].memory == pytest.approx(((264 - 128) + (300 - 128)) / 2 * MiB)
    assert got[Kind.VM].cpu == pytest.approx(0.14)
    assert got[Kind.CT].memory == 0 and got[Kind.CT].cpu == pytest.approx(0.002)
    assert measure([]) == {}


def test_a_vms_memory_overhead_is_what_its_qemu_holds_beyond_its_ram_where_read() -> None:
    """An idle VM has touched little of its RAM: its charge is below its size (0 above
    it), yet its QEMU holds 150 MiB beyond the guest's RAM; where that is not read (the
    fake driver, another member's instance), the charge above the size counts."""
    idle = usage(Kind.VM, State.RUNNING, 180 * MiB, 512 * MiB, 3.0)
    busy = usage(Kind.VM, State.RUNNING, 700 * MiB, 512 * MiB, 3.0)
    beyond = {idle.instance: 150 * MiB}
    got = measure([idle, busy], beyond.get)
    assert got[Kind.VM].memory == pytest.approx((150 + (700 - 512)) / 2 * MiB)
    assert measure([idle])[Kind.VM].memory == 0  # the charge alone: nothing above the size


def _case(tmp_path: Path, found: list[Usage]) -> CapacityCase:
    service = CapacityService(store=None, instances_dir=tmp_path,  # type: ignore[arg-type]
                              policy_file=tmp_path / "policy.json",
                              physical=lambda: HostAmounts(cpu=4, memory=32 * GiB,
                                                           disk=1000 * GiB))
    service.set_policy({"cpu": "4", "memory": "2", "disk": "4"})
    return CapacityCase(service, lambda: found)


def test_the_host_and_its_policy_fill_what_the_caller_leaves(tmp_path: Path) -> None:
    case = _case(tmp_path, [usage(Kind.VM, State.RUNNING, 1536 * MiB, GiB, 25.0)])
    answer = case.answer(Overrides(cpus=1, memory=GiB, disk=10 * GiB))
    assert answer.given.vm_overhead.memory == 512 * MiB and answer.given.vm_overhead.cpu == 0.25
    assert (answer.case.ct.cts, answer.case.ct.binding) == (16, "cpu")
    assert (answer.case.vm.vms, answer.case.vm.binding) == (8, "cpu")
    assert answer.sources["vm"] == "measured on 1 running VM"
    assert answer.sources["ct"] == "not measured (none running)"
    assert answer.sources["host"] == "this host" and answer.sources["policy"] == \
        "this host's policy"


def test_the_callers_figures_win_and_no_measuring_when_all_are_given(tmp_path: Path) -> None:
    def never() -> list[Usage]:
        raise AssertionError("measured although every overhead was given")

    service = _case(tmp_path, []).capacity
    answer = CapacityCase(service, never).answer(Overrides(
        cpus=1, memory=GiB, disk=10 * GiB, host_cpus=8, memory_ratio=None, no_ratio=("cpu",),
        ct_overhead_memory=0, ct_overhead_cpu=0, vm_overhead_memory=0, vm_overhead_cpu=0,
        costs=Costs(price=60)))
    assert answer.given.host.cpu == 8 and answer.given.ratios.cpu is None
    assert answer.given.ratios.memory == 2  # the policy's
    assert answer.sources["host"] == "this host (some given)"
    assert answer.sources["ct"] == answer.sources["vm"] == "given"
    # no CPU ratio: memory binds (32 GiB / (1 GiB / 2))
    assert (answer.case.ct.cts, answer.case.ct.binding) == (64, "memory")
    assert answer.case.ct.per_vps.revenue == 60
