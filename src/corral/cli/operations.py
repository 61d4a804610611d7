"""`corral operation list|show|wait|cancel` and `corral monitor`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from corral.cli import output
from corral.cli.bulk import result_rows
from corral.cli.common import client, fail, wait_for
from corral.cli.output import Format
from corral.domain.statuses import OperationStatus
from corral.wire.models import OperationModel

app = typer.Typer(help="Long-running operations", no_args_is_help=True)
FormatOpt = Annotated[Format, typer.Option("--format", "-f")]


def _row(op: OperationModel) -> list[str]:
    return [op.id, op.action, op.instance or "-", op.status, f"{op.progress:.0%}", op.phase,
            op.created_at, op.error or ""]


@app.command("list")
def list_(fmt: FormatOpt = Format.table,
          limit: Annotated[int, typer.Option(help="newest N")] = 50) -> None:
    """List recent operations, newest first."""
    with client() as c:
        ops = c.list_operations(limit)
    if not output.emit_structured(ops, fmt):
        output.table(["ID", "ACTION", "INSTANCE", "STATUS", "PROGRESS", "PHASE", "CREATED",
                      "ERROR"], [_row(o) for o in ops])


@app.command()
def show(op_id: str, fmt: FormatOpt = Format.table,
         with_log: Annotated[bool, typer.Option(
             "--log", help="also the lines corrald logged while it ran")] = False) -> None:
    """Show one operation (and, with --log, its log lines)."""
    with client() as c:
        op = c.get_operation(op_id)
        lines = c.operation_log(op.id) if with_log else None
        items = c.children(op.id)
    structured: dict[str, object] = {"operation": op.model_dump(mode="json")} if lines is not None \
        else dict(op.model_dump(mode="json"))
    if lines is not None:
        structured["log"] = [ln.model_dump(mode="json") for ln in lines]
    if items:
        structured["children"] = [i.model_dump(mode="json") for i in items]
    if fmt is not Format.table:
        output.emit_structured(structured if lines is not None or items else op, fmt)
        return
    output.key_values(list(zip(["id", "action", "instance", "status", "progress", "phase",
                                "created", "error"], _row(op), strict=True)))
    if items:  # a bulk operation: its items
        output.table(["NAME", "RESULT", "MESSAGE", "OPERATION"], [
            [*row, item.id] for row, item in zip(result_rows(items), items, strict=True)])
    if lines is not None:
        print()
        for ln in lines:  # plain lines, never wrapped or cut: read and grepped
            stamp = datetime.fromtimestamp(ln.time, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            print(f"{stamp} {ln.level.upper():<7} {ln.message}", flush=True)
        if not lines:
            print("(no log lines)")


@app.command()
def wait(op_id: str) -> None:
    """Wait for an operation to end; non-zero exit if it failed."""
    with client() as c:
        op = c.get_operation(op_id)
        wait_for(c, op, f"operation {op_id[:8]}")
    subject = f"{op.action} {op.instance}" if op.instance else op.action
    output.console.print(f"Operation {op.id[:8]} ({subject}) succeeded")


@app.command()
def cancel(op_id: str) -> None:
    """Ask a running operation to stop at its next step."""
    with client() as c:
        op = c.cancel_operation(op_id)
    if op.status in (OperationStatus.SUCCESS, OperationStatus.FAILURE):
        fail(f"operation {op_id} already ended ({op.status})")
    output.console.print(f"Cancellation requested for {op_id}")


def monitor(fmt: FormatOpt = Format.table) -> None:
    """Stream lifecycle and operation events until interrupted (in a cluster: every
    member's, each with its node)."""
    with client() as c:
        try:
            for event in c.events():
                if output.emit_structured(event.model_dump(
                        mode="json", exclude={"node"} if event.node is None else None), fmt):
                    continue
                details = " ".join(
                    f"{k}={round(v, 3) if isinstance(v, float) else v}"
                    for k, v in event.data.items() if v is not None
                )
                # One plain line per event, never wrapped: monitors are piped into grep.
                where = f" node={event.node}" if event.node else ""  # a cluster: every member's
                print(f"{event.time} {event.type} {event.instance or '-'} {details}{where}",
                      flush=True)
        except KeyboardInterrupt:
            pass
