"""`corral label set|unset|list`: labels on instances (chosen later with --selector)."""

from __future__ import annotations

from typing import Annotated

import typer

from corral.cli import output
from corral.cli.common import client, fail
from corral.cli.output import Format
from corral.domain.errors import CorralError
from corral.domain.labels import parse_assignments

label_app = typer.Typer(help="Labels on instances (select them with --selector)",
                        no_args_is_help=True)


def _show(name: str, labels: dict[str, str]) -> None:
    said = ",".join(f"{k}={v}" for k, v in labels.items()) or "(none)"
    output.console.print(f"{name}: {said}", highlight=False)


@label_app.command("set")
def set_(name: str, labels: Annotated[list[str], typer.Argument(help="key=value …")]) -> None:
    """Set labels on an instance (a key it has is given the new value)."""
    try:
        wanted = parse_assignments(labels)
    except CorralError as exc:
        fail(exc.message)
    with client() as c:
        _show(name, c.change_labels(name, wanted))


@label_app.command("unset")
def unset(name: str, keys: Annotated[list[str], typer.Argument(help="label keys")]) -> None:
    """Remove labels from an instance."""
    with client() as c:
        _show(name, c.change_labels(name, unset=keys))


@label_app.command("list")
def list_(name: str, fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
          ) -> None:
    """An instance's labels."""
    with client() as c:
        labels = c.labels(name)
    if not output.emit_structured(labels, fmt):
        output.table(["KEY", "VALUE"], [[k, v] for k, v in labels.items()])
