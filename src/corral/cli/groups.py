"""`corral group create|list|show|delete`: placement groups (affinity, anti-affinity)."""

from __future__ import annotations

from typing import Annotated

import typer

from corral.cli import output
from corral.cli.common import client, fail
from corral.cli.output import Format
from corral.client import cluster as api
from corral.wire.cluster import GroupCreateRequest, GroupModel

group_app = typer.Typer(help="Placement groups: keep instances apart (anti-affinity) or "
                        "together (affinity) on the cluster's members", no_args_is_help=True)
FormatOpt = Annotated[Format, typer.Option("--format", "-f")]


def _members(g: GroupModel) -> str:
    return ", ".join(f"{m.instance}@{m.node}" for m in g.members) or "-"


@group_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="a DNS label, e.g. db")],
    anti_affinity: Annotated[bool, typer.Option(
        "--anti-affinity", help="never two of the group on one member")] = False,
    affinity: Annotated[bool, typer.Option(
        "--affinity", help="all of the group on one member (the first one's)")] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Make a placement group; `corral create … --group NAME` puts instances in it."""
    if anti_affinity == affinity:
        fail("give exactly one of --anti-affinity and --affinity")
    with client() as c:
        g = api.group_create(c, GroupCreateRequest(
            name=name, rule="anti-affinity" if anti_affinity else "affinity"))
    if not output.emit_structured(g, fmt):
        output.console.print(f"Placement group [bold]{g.name}[/] ({g.rule}) created")


@group_app.command("list")
def list_(fmt: FormatOpt = Format.table) -> None:
    """Every placement group with its instances (instance@member)."""
    with client() as c:
        found = api.groups(c)
    if not output.emit_structured(found, fmt):
        output.table(("NAME", "RULE", "INSTANCES"),
                     [(g.name, g.rule, _members(g)) for g in found])


@group_app.command("show")
def show(name: str, fmt: FormatOpt = Format.table) -> None:
    """One placement group: its rule and where each of its instances is."""
    with client() as c:
        g = api.group(c, name)
    if output.emit_structured(g, fmt):
        return
    output.key_values([("name", g.name), ("rule", g.rule), ("created", g.created_at),
                       ("instances", _members(g))])


@group_app.command("delete")
def delete(name: str) -> None:
    """Delete an empty placement group."""
    with client() as c:
        api.group_delete(c, name)
    output.console.print(f"Placement group [bold]{name}[/] deleted")
