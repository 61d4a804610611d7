"""`corral capacity`: how many VPS of one size fit this server as CTs, as VMs and as mixes,
and what each earns (the seed's cost model by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from corral.cli import chart, output
from corral.cli.common import client, fail
from corral.cli.output import Format
from corral.domain.capacity import Costs, overhead_from_bench
from corral.domain.errors import InvalidInput
from corral.wire.capacity import AmountsModel, CapacityCaseModel, FitModel

SEED = Costs()
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or yaml")]


def _cpu(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") or "0"


def _amounts(a: AmountsModel) -> str:
    return (f"{_cpu(a.cpu)} CPU, {output.size(round(a.memory))} memory, "
            f"{output.size(round(a.disk))} disk")


def _ratio(value: float | None) -> str:
    return "none" if value is None else f"{value:g}:1"


def _money(value: float, decimals: int = 1) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.{decimals}f}"


def _servers(row: FitModel) -> str:
    if row.label == "ct":
        return f"{row.cts} CTs"
    if row.label == "vm":
        return f"{row.vms} VMs"
    return f"{row.cts} CTs + {row.vms} VMs"


def render(case: CapacityCaseModel, said: dict[str, str] | None = None) -> None:
    """The inputs as key/values, the rows as a table, then the notes; ``said`` replaces
    the daemon's word on where a figure came from (e.g. a bench CSV the CLI read)."""
    costs = case.costs
    sources = {**case.sources, **(said or {})}
    output.key_values([
        ("server", f"{_amounts(case.host)} ({sources.get('host', '')})"),
        ("VPS size", _amounts(case.size)),
        ("policy", f"cpu {_ratio(case.ratios.cpu)}, memory {_ratio(case.ratios.memory)}, "
                   f"disk {_ratio(case.ratios.disk)} ({sources.get('policy', '')})"),
        ("CT overhead", f"{_amounts(case.ct_overhead)} ({sources.get('ct', '')})"),
        ("VM overhead", f"{_amounts(case.vm_overhead)} ({sources.get('vm', '')})"),
        ("one CT takes", _amounts(case.ct_need)),
        ("one VM takes", _amounts(case.vm_need)),
        ("server costs", f"{_money(costs.per_server)}/month = server + network "
                         f"{_money(costs.server_network)} + power {_money(costs.power)} "
                         f"({costs.watts:g} W at ${costs.kwh_price:g}/kWh) + management "
                         f"{_money(costs.management)}"),
        ("each VPS", f"sells for {_money(costs.price)}/month, acquisition/support "
                     f"{_money(costs.acquisition)}"),
    ])
    output.table(
        ["PER SERVER", "BINDING", "COST/VPS", "GROSS/VPS", "NET/VPS", "REVENUE/SERVER",
         "NET/SERVER"],
        [[_servers(r), r.binding or "given", _money(r.per_vps.cost), _money(r.per_vps.gross),
          _money(r.per_vps.net), _money(r.per_server.revenue, 0), _money(r.per_server.net, 0)]
         for r in case.rows])
    for note in case.notes:
        print(f"note: {note}")


def svg(case: CapacityCaseModel) -> str:
    labels = [_servers(r) for r in case.rows]
    size = case.size
    title = (f"VPS of {_cpu(size.cpu)} CPU, {output.size(round(size.memory))} memory, "
             f"{output.size(round(size.disk))} disk per server")
    return chart.bars(title, labels, [
        chart.Panel("VPS per server", [float(r.cts + r.vms) for r in case.rows],
                    lambda v: f"{v:g}"),
        chart.Panel("net profit per VPS ($/month)", [r.per_vps.net for r in case.rows],
                    _money),
        chart.Panel("net profit per server ($/month)", [r.per_server.net for r in case.rows],
                    lambda v: _money(v, 0)),
    ], footer=f"server costs {_money(case.costs.per_server)}/month; price "
              f"{_money(case.costs.price)}, acquisition/support {_money(case.costs.acquisition)}"
              " per VPS; " + "; ".join(case.notes))


def _bench(path: Path) -> dict[str, str | float | None]:
    try:
        text = path.read_text()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    try:
        ct, vm = overhead_from_bench(text)
    except InvalidInput as exc:
        fail(f"{path}: {exc.message}")
    found: dict[str, str | float | None] = {}
    for kind, amounts in (("ct", ct), ("vm", vm)):
        if amounts is not None:
            found[f"{kind}_overhead_memory"] = f"{round(amounts.memory)}B"
            found[f"{kind}_overhead_cpu"] = round(amounts.cpu, 4)
    return found


def capacity(
    cpus: Annotated[float, typer.Option(help="the VPS size: CPUs", min=0.001)] = 1,
    memory: Annotated[str, typer.Option(help="the VPS size: memory (e.g. 1G)")] = "1G",
    disk: Annotated[str, typer.Option(help="the VPS size: disk (e.g. 10G)")] = "10G",
    server_network: Annotated[float, typer.Option(
        min=0, help="$ per server and month for server and network")] = SEED.server_network,
    watts: Annotated[float, typer.Option(min=0, help="a server's mean power draw")] = SEED.watts,
    kwh_price: Annotated[float, typer.Option(min=0, help="$ per kWh")] = SEED.kwh_price,
    management: Annotated[float, typer.Option(
        min=0, help="$ per server and month")] = SEED.management,
    price: Annotated[float, typer.Option(min=0, help="$ a VPS sells for per month")] = SEED.price,
    acquisition: Annotated[float, typer.Option(
        min=0, help="$ acquisition and support per VPS and month")] = SEED.acquisition,
    host_cpus: Annotated[float | None, typer.Option(
        min=0.001, help="model a server with this many CPUs (default: this host's)")] = None,
    host_memory: Annotated[str | None, typer.Option(help="… this much memory")] = None,
    host_disk: Annotated[str | None, typer.Option(help="… this much disk")] = None,
    cpu_ratio: Annotated[str | None, typer.Option(
        help="over-commitment ratio (default: the host policy's; 'none': no maximum)")] = None,
    memory_ratio: Annotated[str | None, typer.Option(help="likewise for memory")] = None,
    disk_ratio: Annotated[str | None, typer.Option(help="likewise for disk")] = None,
    ct_overhead_memory: Annotated[str | None, typer.Option(
        help="a CT's memory beyond its size (default: measured)")] = None,
    ct_overhead_cpu: Annotated[float | None, typer.Option(
        min=0, help="CPUs an idle CT uses (default: measured)")] = None,
    vm_overhead_memory: Annotated[str | None, typer.Option(
        help="a VM's memory beyond its size (default: measured)")] = None,
    vm_overhead_cpu: Annotated[float | None, typer.Option(
        min=0, help="CPUs an idle VM uses (default: measured)")] = None,
    ct_count: Annotated[int | None, typer.Option(
        min=0, help="take this many CTs per server instead of fitting them")] = None,
    vm_count: Annotated[int | None, typer.Option(
        min=0, help="take this many VMs per server instead of fitting them")] = None,
    from_bench: Annotated[Path | None, typer.Option(
        "--from-bench", help="the overhead from a bench/density.py CSV")] = None,
    no_measure: Annotated[bool, typer.Option(
        "--no-measure", help="do not measure the running instances (overhead 0 unless "
        "given)")] = False,
    chart_file: Annotated[Path | None, typer.Option(
        "--chart", help="also write an SVG chart to this file")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """How many CTs, VMs and mixes of one VPS size fit this server, the resource that binds,
    and cost, gross margin and net profit per VPS and per server (one server; not yet a
    cluster)."""
    if chart_file is not None and chart_file.suffix.lower() != ".svg":
        fail(f"--chart writes SVG: name a .svg file, not {chart_file}")
    given: dict[str, str | float | int | bool | None] = dict(
        cpus=cpus, memory=memory, disk=disk, server_network=server_network, watts=watts,
        kwh_price=kwh_price, management=management, price=price, acquisition=acquisition,
        host_cpus=host_cpus, host_memory=host_memory, host_disk=host_disk,
        cpu_ratio=cpu_ratio, memory_ratio=memory_ratio, disk_ratio=disk_ratio,
        ct_count=ct_count, vm_count=vm_count, measure=not no_measure)
    said = {}
    if from_bench is not None:
        from_file = _bench(from_bench)
        given.update(from_file)
        said = {kind: f"bench {from_bench}" for kind in ("ct", "vm")
                if f"{kind}_overhead_memory" in from_file}
    for key, value in (("ct_overhead_memory", ct_overhead_memory),
                       ("ct_overhead_cpu", ct_overhead_cpu),
                       ("vm_overhead_memory", vm_overhead_memory),
                       ("vm_overhead_cpu", vm_overhead_cpu)):
        if value is not None:  # an explicit figure wins over the bench's
            given[key] = value
    with client() as c:
        case = c.capacity(**given)
    if chart_file is not None:
        try:
            chart_file.write_text(svg(case))
        except OSError as exc:
            fail(f"cannot write {chart_file}: {exc.strerror or exc}")
    if output.emit_structured(case, fmt):
        return
    render(case, said)
    if chart_file is not None:
        print(f"chart: {chart_file}")
