"""Shared CLI plumbing: the client, errors as exit codes, waiting for operations."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from corral.cli.output import errors
from corral.client import ApiError, CorralClient
from corral.domain.statuses import OperationStatus
from corral.wire.models import OperationModel

T = TypeVar("T")
PAST = {"start": "started", "stop": "stopped", "restart": "restarted", "suspend": "suspended",
        "resume": "resumed", "delete": "deleted"}


def fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[bold red]Error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def client() -> Iterator[CorralClient]:
    try:
        with CorralClient() as c:
            yield c
    except ApiError as exc:
        fail(exc.message)


def wait_for(c: CorralClient, op: OperationModel, label: str,
             quiet: bool = False) -> OperationModel:
    """Follow an operation to its end with a progress bar; exit non-zero if it failed."""
    done = follow(c, op, label, quiet)
    if done.status is not OperationStatus.SUCCESS:
        fail(f"{label} failed: {done.error or done.status} (operation {done.id})")
    return done


def follow(c: CorralClient, op: OperationModel, label: str,
           quiet: bool = False) -> OperationModel:
    """Follow an operation to its end with a progress bar (on a terminal); its final record."""
    if op.status.final:  # it ended while the daemon held the answer (``wait``)
        done = op
    elif quiet or not sys.stderr.isatty():
        done = c.wait(op.id)
    else:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[phase]}"),
            TimeElapsedColumn(), transient=True,
        ) as bar:
            task = bar.add_task(label, total=1.0, phase="")

            def show(current: OperationModel) -> None:
                bar.update(task, completed=current.progress, phase=current.phase)

            done = c.wait(op.id, on_progress=show)
    return done


# How long the daemon may hold an action's answer for it to end (one round trip for a start);
# longer operations then show a progress bar.
HOLD_SECONDS = 2.0


def each(refs: list[str], act: Callable[[CorralClient, str, float], OperationModel], verb: str,
         no_wait: bool) -> None:
    """Run ``act(client, ref, wait)`` for every named instance; report all, fail if any
    failed."""
    failed = False
    with client() as c:
        for ref in refs:
            try:
                op = act(c, ref, 0 if no_wait else HOLD_SECONDS)
                if no_wait:
                    print(op.id)
                else:
                    done = wait_for(c, op, f"{verb} {ref}")
                    said = f": {done.phase}" if done.phase not in ("", "done") else ""
                    print(f"{PAST.get(verb, verb + 'ed').capitalize()} {ref}{said}")
            except ApiError as exc:
                errors.print(f"[bold red]Error:[/] {escape(exc.message)}", highlight=False)
                failed = True
            except typer.Exit:
                failed = True
    if failed:
        raise typer.Exit(1)
