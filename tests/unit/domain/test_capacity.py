"""The business-case model (domain/capacity.py): the seed's table from its inputs, fitting,
the binding resource, mixes, and the overhead split of a density bench CSV."""

from __future__ import annotations

import pytest

from corral.domain.capacity import (
    Amounts,
    CaseInput,
    Costs,
    Ratios,
    business_case,
    economics,
    fit,
    need,
    overhead_from_bench,
    overhead_from_rows,
)
from corral.domain.errors import InvalidInput

GiB = 1024**3
MiB = 1024**2
NONE = Amounts()


def test_the_seeds_costs_per_server() -> None:
    costs = Costs()  # the seed's inputs are the defaults
    assert costs.power == pytest.approx(43.2)  # 400 W, 720 h, $0.15/kWh: the seed's "$43"
    assert costs.per_server == pytest.approx(293.2)


def test_the_seeds_table_10_vms_against_25_cts() -> None:
    """$29.3 vs $11.7 cost per VPS, $21 vs $38 gross, $6 vs $23 net (the seed's rounding)."""
    vm, _ = economics(Costs(), 10)
    ct, _ = economics(Costs(), 25)
    assert round(vm.cost, 1) == 29.3 and round(ct.cost, 1) == 11.7
    assert round(vm.gross) == 21 and round(ct.gross) == 38
    assert round(vm.net) == 6 and round(ct.net) == 23


def test_the_seeds_table_through_the_whole_model_with_given_counts() -> None:
    case = business_case(CaseInput(
        host=Amounts(8, 64 * GiB, 1000 * GiB), size=Amounts(1, 2 * GiB, 20 * GiB),
        ratios=Ratios(), ct_overhead=NONE, vm_overhead=NONE, ct_count=25, vm_count=10))
    assert (case.ct.cts, case.vm.vms) == (25, 10)
    assert case.ct.binding == case.vm.binding == ""  # given, not fitted
    assert round(case.vm.per_vps.cost, 1) == 29.3 and round(case.ct.per_vps.cost, 1) == 11.7
    assert round(case.vm.per_vps.net) == 6 and round(case.ct.per_vps.net) == 23
    # per server: n times the VPS figures; revenue n x price
    assert case.ct.per_server.revenue == 25 * 50
    assert case.ct.per_server.net == pytest.approx(25 * case.ct.per_vps.net)
    assert case.ct.per_server.gross == pytest.approx(25 * 50 - 293.2)
    assert case.mixes == ()


def test_a_seed_like_server_fits_25_cts_and_10_vms_by_their_overhead() -> None:
    """The VM's measured overhead (QEMU beyond its RAM, idle CPU) is what makes 10 of 25."""
    case = business_case(CaseInput(
        host=Amounts(16, 64 * GiB, 2000 * GiB), size=Amounts(2, 4 * GiB, 40 * GiB),
        ratios=Ratios(cpu=8, memory=1.6, disk=1), ct_overhead=Amounts(0, 32 * MiB, 0),
        vm_overhead=Amounts(1.0, 3.8 * GiB, 0)))
    assert (case.ct.cts, case.ct.binding) == (25, "memory")
    assert (case.vm.vms, case.vm.binding) == (10, "memory")
    assert round(case.vm.per_vps.cost, 1) == 29.3 and round(case.ct.per_vps.cost, 1) == 11.7


def test_need_shares_the_sold_amount_by_the_ratio_and_adds_the_overhead() -> None:
    got = need(Amounts(2, 4 * GiB, 10 * GiB), Ratios(cpu=8, memory=4, disk=None),
               Amounts(0.25, 100 * MiB, 0))
    assert got == Amounts(0.25 + 0.25, GiB + 100 * MiB, 0)


@pytest.mark.parametrize(("per", "count", "binding"), [
    (Amounts(0.5, 1 * GiB, 1 * GiB), 4, "cpu"),
    (Amounts(0.1, 3 * GiB, 1 * GiB), 2, "memory"),
    (Amounts(0.1, 1 * GiB, 40 * GiB), 2, "disk"),
    (Amounts(0, 0, 25 * GiB), 4, "disk"),  # a resource nothing takes does not bind
])
def test_fit_names_the_resource_that_runs_out_first(per: Amounts, count: int,
                                                    binding: str) -> None:
    assert fit(Amounts(2, 8 * GiB, 100 * GiB), per) == (count, binding)


def test_nothing_to_fit_by_is_an_input_error() -> None:
    with pytest.raises(InvalidInput, match="nothing limits"):
        fit(Amounts(2, GiB, GiB), Amounts())


def test_mixes_fill_what_the_vms_leave_with_cts() -> None:
    host = Amounts(4, 32 * GiB, 1000 * GiB)
    case = business_case(CaseInput(
        host=host, size=Amounts(1, 1 * GiB, 10 * GiB), ratios=Ratios(cpu=4, memory=2, disk=4),
        ct_overhead=Amounts(0, 0, 0), vm_overhead=Amounts(0.25, 512 * MiB, 0)))
    assert (case.ct.cts, case.ct.binding) == (16, "cpu")  # 4 / (1/4)
    assert (case.vm.vms, case.vm.binding) == (8, "cpu")  # 4 / (1/4 + 1/4)
    assert case.mixes, "mixes between no VM and all VMs"
    for mix in case.mixes:
        assert 0 < mix.vms < case.vm.vms
        # what the VMs take plus what the CTs take fits, and one more CT would not
        for resource in ("cpu", "memory", "disk"):
            assert mix.used.get(resource) <= 1 + 1e-9
        assert mix.cts == int((4 - mix.vms * 0.5) / 0.25 + 1e-9)
        assert mix.binding == "cpu"
    counts = [m.vms for m in case.mixes]
    assert counts == sorted(set(counts))


def test_bad_inputs_are_refused_with_their_name() -> None:
    base = CaseInput(host=Amounts(2, GiB, GiB), size=Amounts(1, GiB, GiB), ratios=Ratios(),
                     ct_overhead=NONE, vm_overhead=NONE)
    with pytest.raises(InvalidInput, match="price must be a number >= 0"):
        business_case(CaseInput(**{**base.__dict__, "costs": Costs(price=-1)}))
    with pytest.raises(InvalidInput, match="memory over-commitment ratio must be > 0"):
        business_case(CaseInput(**{**base.__dict__, "ratios": Ratios(memory=0)}))
    with pytest.raises(InvalidInput, match="VM count per server must be >= 0"):
        business_case(CaseInput(**{**base.__dict__, "vm_count": -1}))


def test_a_server_with_no_vps_loses_its_whole_cost() -> None:
    per_vps, per_server = economics(Costs(), 0)
    assert per_vps.revenue == 0 and per_server.net == pytest.approx(-293.2)


def test_overhead_split_between_kinds_by_least_squares() -> None:
    # totals from 2 MiB per CT and 260 MiB per VM, at the batch shapes density.py runs
    rows = [(c, v, c * 2.0 + v * 260.0) for c, v in ((100, 10), (200, 20), (300, 20), (400, 20))]
    ct, vm = overhead_from_rows(rows)
    assert ct == pytest.approx(2.0) and vm == pytest.approx(260.0)


def test_overhead_of_one_kind_only_and_of_inseparable_rows() -> None:
    ct, vm = overhead_from_rows([(10, 0, 30.0), (20, 0, 60.0)])
    assert ct == pytest.approx(3.0) and vm is None
    with pytest.raises(InvalidInput, match="one proportion"):
        overhead_from_rows([(10, 1, 40.0), (20, 2, 80.0)])


def test_overhead_from_a_density_csv() -> None:
    header = ("cts,vms,host_mem_mib_per_inst,cgroup_mem_mib_per_inst,idle_cpu_pct_per_inst,"
              "disk_mib_per_inst,corrald_rss_mib,corrald_fds,list_p50_ms,list_p99_ms,"
              "cli_list_s,stats_s,metrics_s\n")
    lines = []
    for cts, vms in ((100, 10), (200, 20), (300, 20)):
        n = cts + vms
        mem = (cts * 2.0 + vms * 264.0) / n  # MiB per instance, both kinds together
        cpu = (cts * 0.01 + vms * 13.0) / n  # percent of a CPU per instance
        lines.append(f"{cts},{vms},{mem},1,{cpu},5,140,50,3,4,0.5,0.1,0.2\n")
    ct, vm = overhead_from_bench(header + "".join(lines))
    assert ct is not None and vm is not None
    assert ct.memory == 0  # 2 MiB is within the 64 MiB the bench's CTs were given
    assert vm.memory == pytest.approx((264 - 128) * MiB)
    assert vm.cpu == pytest.approx(0.13) and ct.cpu == pytest.approx(0.0001)


def test_a_csv_that_is_not_the_benchs_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"not a bench/density\.py CSV"):
        overhead_from_bench("a,b\n1,2\n")
    with pytest.raises(InvalidInput, match="line 2: not numbers"):
        overhead_from_bench("cts,vms,host_mem_mib_per_inst,idle_cpu_pct_per_inst\nx,1,2,3\n")
