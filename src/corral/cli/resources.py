"""`corral set`, `corral stats`, `corral top` and `corral host policy`."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
import yaml
from rich.live import Live

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
        ("instance", s.instance), ("type", s.type), ("state", s.state),
        ("cpu", f"{s.cpu_percent:.1f} %  ({s.cpu_seconds:.1f} s, {s.vcpus} CPUs)"),
        ("memory", f"{output.size(s.memory_used)} of {output.setting_size(s.memory_total)}"),
        ("disk", f"{output.size(s.disk_used)} allocated of {output.size(s.disk_size)}"),
        ("io read", f"{output.size(s.io_read_bytes)} ({s.io_read_ops} ops)"),
        ("io write", f"{output.size(s.io_write_bytes)} ({s.io_write_ops} ops)"),
        ("net rx/tx", f"{output.size(s.net_rx_bytes)} / {output.size(s.net_tx_bytes)}"),
        ("pids", str(s.pids)), ("oom kills", str(s.oom_kills)),
    ]


def stats(ref: Annotated[str, typer.Argument(help="name or id")],
          fmt: FormatOpt = Format.table,
          history: Annotated[str | None, typer.Option(
              "--history", metavar="hour|day|month",
              help="the history corrald keeps: a sample a minute for the last hour or day, "
                   "an hour for the last month")] = None) -> None:
    """Usage of one instance: CPU %, memory, disk, IO, network (now, or its history)."""
    if history is not None:
        from corral.cli.history import show

        with client() as c:
            past = c.history(ref, history)
        if not output.emit_structured(past, fmt):
            show(past)
        return
    with client() as c:
        s = c.stats(ref)
    if not output.emit_structured(s, fmt):
        output.key_values(_stats_rows(s))


def host_history(
    span: Annotated[str, typer.Argument(metavar="hour|day|month", help="how far back")] = "hour",
    fmt: FormatOpt = Format.table,
) -> None:
    """The history of every instance of this host summed: CPU, memory, disk IO, network."""
    from corral.cli.history import show

    with client() as c:
        past = c.history(None, span)
    if not output.emit_structured(past, fmt):
        show(past)


TOP_COLUMNS = ("NAME", "TYPE", "STATE", "CPU%", "CPUS", "MEMORY", "DISK", "IO R", "IO W",
               "NET RX", "NET TX")


def _top_rows(rows: list[StatsModel], before: dict[str, StatsModel]) -> list[list[str]]:
    found = []
    for s in sorted(rows, key=lambda r: -r.cpu_percent):
        prev = before.get(s.instance)
        found.append([
            s.instance, s.type, s.state, f"{s.cpu_percent:.1f}" if s.running else "-",
            str(s.vcpus), f"{output.size(s.memory_used)}/{output.setting_size(s.memory_total)}",
            output.size(s.disk_used), _rate(s, prev, "io_read_bytes"),
            _rate(s, prev, "io_write_bytes"), _rate(s, prev, "net_rx_bytes"),
            _rate(s, prev, "net_tx_bytes"),
        ])
    return found


def _stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _frame(rows: list[StatsModel], before: dict[str, StatsModel], fmt: Format) -> None:
    """One frame for a pipe or a file: a timestamp and plain columns (a blank line after), a
    JSON line, or a YAML document."""
    moment = time.time()
    frame = {"time": moment, "instances": [s.model_dump(mode="json") for s in rows]}
    if fmt is Format.json:
        print(json.dumps(frame), flush=True)
        return
    if fmt is Format.yaml:
        print("---\n" + yaml.safe_dump(frame, sort_keys=False), end="", flush=True)
        return
    print(_stamp(moment))
    print(output.plain_columns(TOP_COLUMNS, _top_rows(rows, before)), flush=True)


def top(
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 2.0,
    count: Annotated[int | None, typer.Option(
        "--count", "-n", help="frames to show (0: until Ctrl-C); default: until Ctrl-C on a "
        "terminal, else 1")] = None,
    fmt: Annotated[Format, typer.Option(
        "--format", "-f", help="table, json (one line per frame) or yaml (one document per "
        "frame); anything but a table on a terminal prints frames one after another")]
        = Format.table,
) -> None:
    """Usage of every instance, busiest first: live on a terminal, N timestamped frames to
    a pipe or file (for scripts)."""
    live_view = fmt is Format.table and output.to_terminal()
    frames = count if count is not None else (0 if live_view else 1)
    if frames < 0:
        fail("--count is 0 (until Ctrl-C) or more")
    before: dict[str, StatsModel] = {}
    shown = 0
    with client() as c, contextlib.ExitStack() as stack:
        live = stack.enter_context(Live(console=output.console, auto_refresh=False)) \
            if live_view else None
        try:
            while True:
                rows = c.all_stats()
                if live is not None:
                    live.update(output.fitting(TOP_COLUMNS, _top_rows(rows, before),
                                               title=_stamp(time.time()), box=None),
                                refresh=True)
                else:
                    _frame(rows, before, fmt)
                before = {s.instance: s for s in rows}
                shown += 1
                if frames and shown >= frames:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            return


def policy(
    settings: Annotated[list[str] | None, typer.Argument(
        help="resource=ratio … (cpu, memory, disk; 'none' removes the maximum); "
             "id_quarantine=30d (how long a deleted instance's id stays unused; 0: never "
             "reused); ksm=on|off (merge identical memory pages of VMs); "
             "audit_retention=365d (0: no age limit), audit_max_entries=1000000 (0: no "
             "count limit): how much of the audit log is kept, pruned hourly; "
             "vm_launch_priority=16 (a starting VM's CPU weight times this until QEMU "
             "is up; default 16; 1: none)")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Show or change the host policy: maximum allocated/physical ratios, id quarantine,
    KSM, audit log retention, VM launch priority."""
    with client() as c:
        result = c.set_policy(assignments(settings)) if settings else c.policy()
    if not output.emit_structured(result, fmt):
        output.key_values([(k, _policy_value(k, v)) for k, v in result.model_dump().items()])


def _policy_value(key: str, value: float | None) -> str:
    if key == "ksm":
        return "on" if value else "off"
    if key == "id_quarantine":
        return "0 (never reused)" if not value else f"{value:g}d"
    if key == "audit_retention":
        return "0 (no age limit)" if not value else f"{value:g}d"
    if key == "vm_launch_priority":
        return "1 (none)" if value == 1 else f"{value:g}x the CPU weight until QEMU is up"
    if key == "audit_max_entries":
        return "0 (no count limit)" if not value else str(int(value))  # not 1e+06
    return "none" if value is None else f"{value:g}:1"
