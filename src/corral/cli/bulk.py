"""Bulk forms of the instance commands: several names (brace ranges expanded here) or
``--selector``, one API call, a progress bar over the whole set, a per-item result table."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from corral.cli import output
from corral.cli.common import client, fail, follow
from corral.client import CorralClient
from corral.domain.bulk import DEFAULT_PARALLEL, expand_names
from corral.domain.errors import CorralError
from corral.domain.statuses import OperationStatus
from corral.wire.bulk import BulkRequestModel
from corral.wire.models import OperationModel

SelectorOpt = Annotated[str | None, typer.Option(
    "--selector", "-l", help="instances whose labels match, e.g. role=web,tier!=db")]
ParallelOpt = Annotated[int, typer.Option(
    "--parallel", "-j", help="items at a time (several names or --selector)")]
FailFastOpt = Annotated[bool, typer.Option(
    "--fail-fast/--continue", help="stop at the first failed item, or go on (default)")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
PARALLEL = DEFAULT_PARALLEL

CONFIRM_ABOVE = 3
"""A delete of more instances than this (or by selector) asks first; naming 2 or 3 is as
deliberate as naming one."""

RESULT = {OperationStatus.SUCCESS: "ok", OperationStatus.FAILURE: "failed",
          OperationStatus.CANCELLED: "failed", OperationStatus.SKIPPED: "skipped",
          OperationStatus.PENDING: "pending", OperationStatus.RUNNING: "running"}


def names(patterns: list[str] | None) -> list[str]:
    """The names given, brace ranges (``web-{1..10}``) and lists (``{a,b}``) expanded."""
    try:
        return expand_names(patterns or [])
    except CorralError as exc:
        fail(exc.message)


def is_bulk(refs: list[str], selector: str | None) -> bool:
    """Several instances (or a selector): the bulk path; one name: the command as ever."""
    return selector is not None or len(refs) != 1


def result_rows(items: list[OperationModel]) -> list[list[str]]:
    return [[i.instance or "-", RESULT.get(i.status, str(i.status)),
             (i.error or "") if i.status in (OperationStatus.FAILURE, OperationStatus.CANCELLED)
             else ("" if i.phase in ("done", "queued") else i.phase)] for i in items]


def run(request: BulkRequestModel, no_wait: bool = False) -> None:
    """Send ``request``; follow the parent with a progress bar, print each item's result,
    exit 1 if any failed (or the whole was cancelled)."""
    verb = request.action.value
    with client() as c:
        parent = c.bulk(request)
        if no_wait:
            print(parent.id)
            return
        done = follow(c, parent, f"{verb} ({parent.id[:8]})")
        items = c.children(parent.id)
    report(done, items)


def report(done: OperationModel, items: list[OperationModel]) -> None:
    output.table(["NAME", "RESULT", "MESSAGE"], result_rows(items))
    summary = done.phase if done.status is OperationStatus.SUCCESS else (done.error or "")
    output.errors.print(f"{done.action} {summary} (operation {done.id})", highlight=False)
    if done.status is not OperationStatus.SUCCESS:
        raise typer.Exit(1)


def confirm_delete(c: CorralClient, refs: list[str], selector: str | None,
                   yes: bool) -> list[str]:
    """The instances a bulk delete removes, confirmed: by selector, they are looked up
    here and exactly those (by name) are sent."""
    chosen = refs if selector is None else [i.name for i in c.list_instances(selector=selector)]
    if selector is not None and not chosen:
        fail(f"no instance matches the selector '{selector}'")
    if yes or (selector is None and len(chosen) <= CONFIRM_ABOVE):
        return chosen
    shown = ", ".join(chosen[:10]) + (f" and {len(chosen) - 10} more" if len(chosen) > 10 else "")
    if not sys.stdin.isatty():
        fail(f"deleting {len(chosen)} instances ({shown}) needs --yes")
    if not typer.confirm(f"Delete {len(chosen)} instances: {shown}?", default=False):
        fail("nothing deleted", 1)
    return chosen
