"""`corral set`, `corral stats`, `corral top` and `corral host policy`."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from corral.cli import output
from corral.cli.common import client, fail
from corral.cli.output import Format
from corral.wire.models import StatsModel

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or yaml")]
KEYS_HELP = (
    "cpus, cpu_limit (% of one CPU), cpu_shares, cpu_pin (e.g. 0-1), memory, memory_min, "
    "swap, disk, io_read_bps, io_write_bps, io_iops, pids (CTs), max_cpus (VMs); "
    "'none' clears an optional key"
)


def assignments(items: list[str] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"'{item}' is not key=value (e.g. cpu_limit=50)")
        found[key.strip()] = value.strip()
    return found


def set_(
    ref: Annotated[str, typer.Argument(help="name or id")],
    settings: Annotated[list[str], typer.Argument(help=f"key=value … ({KEYS_HELP})")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Change resources; live where the instance's kind allows, else at its next start."""
    with client() as c:
        result = c.set_resources(ref, assignments(settings))
    if output.emit_structured(result, fmt):
        return
    output.table(["KEY", "APPLIED", "NOTE"],
                 [[ch.key, ch.applied, ch.note or "-"] for ch in result.changes])
    if not result.changes:
        output.console.print("nothing changed")


def _rate(now: StatsModel, before: StatsModel | None, field: str) -> str:
    if before is None or now.time <= before.time:
        return "-"
    delta = getattr(now, field) - getattr(before, field)
    return output.size(max(0, int(delta / (now.time - before.time)))) + "/s"


def _stats_rows(s: StatsModel, before: StatsModel | None = None) -> list[tuple[str, str]]:
    return [
        ("instance", s.instance), ("type", s.type), ("running", str(s.running).lower()),
        ("cpu", f"{s.cpu_percent:.1f} %  ({s.cpu_seconds:.1f} s, {s.vcpus} CPUs)"),
        ("memory", f"{output.size(s.memory_used)} of {output.size(s.memory_total)}"),
        ("disk", f"{output.size(s.disk_used)} allocated of {output.size(s.disk_size)}"),
        ("io read", f"{output.size(s.io_read_bytes)} ({s.io_read_ops} ops)"),
        ("io write", f"{output.size(s.io_write_bytes)} ({s.io_write_ops} ops)"),
        ("net rx/tx", f"{output.size(s.net_rx_bytes)} / {output.size(s.net_tx_bytes)}"),
        ("pids", str(s.pids)), ("oom kills", str(s.oom_kills)),
    ]


def stats(ref: Annotated[str, typer.Argument(help="name or id")],
          fmt: FormatOpt = Format.table) -> None:
    """Usage of one instance: CPU %, memory, disk, IO, network."""
    with client() as c:
        s = c.stats(ref)
    if not output.emit_structured(s, fmt):
        output.key_values(_stats_rows(s))


def _top_table(rows: list[StatsModel], before: dict[str, StatsModel]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "TYPE", "CPU%", "CPUS", "MEMORY", "DISK", "IO R", "IO W",
                   "NET RX", "NET TX"):
        table.add_column(column)
    for s in sorted(rows, key=lambda r: -r.cpu_percent):
        prev = before.get(s.instance)
        table.add_row(
            s.instance, s.type, f"{s.cpu_percent:.1f}" if s.running else "-", str(s.vcpus),
            f"{output.size(s.memory_used)}/{output.size(s.memory_total)}",
            output.size(s.disk_used), _rate(s, prev, "io_read_bytes"),
            _rate(s, prev, "io_write_bytes"), _rate(s, prev, "net_rx_bytes"),
            _rate(s, prev, "net_tx_bytes"),
        )
    return table


def top(
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 2.0,
    count: Annotated[int, typer.Option("--count", "-n", help="refreshes (0: until Ctrl-C)")] = 0,
) -> None:
    """Live usage of every instance, busiest first."""
    before: dict[str, StatsModel] = {}
    shown = 0
    with client() as c, Live(console=output.console, auto_refresh=False) as live:
        try:
            while True:
                rows = c.all_stats()
                live.update(_top_table(rows, before), refresh=True)
                before = {s.instance: s for s in rows}
                shown += 1
                if count and shown >= count:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            return


def policy(
    settings: Annotated[list[str] | None, typer.Argument(
        help="resource=ratio … (cpu, memory, disk; 'none' removes the maximum)")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Show or change the over-commitment policy (maximum allocated/physical ratios)."""
    with client() as c:
        result = c.set_policy(assignments(settings)) if settings else c.policy()
    if not output.emit_structured(result, fmt):
        output.key_values([(k, "none" if v is None else f"{v:g}:1")
                           for k, v in result.model_dump().items()])
