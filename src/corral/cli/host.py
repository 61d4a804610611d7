"""`corral host info` and `corral template …`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from corral.cli import output
from corral.cli.common import client, wait_for
from corral.cli.output import Format

host_app = typer.Typer(help="This host", no_args_is_help=True)
template_app = typer.Typer(help="Templates", no_args_is_help=True)
FormatOpt = Annotated[Format, typer.Option("--format", "-f")]


def _feature_text(value: Any) -> str:
    if isinstance(value, dict) and "available" in value:
        yes = value["available"]
        if output.to_terminal():
            mark = "[green]yes[/]" if yes else "[red]no[/]"
        else:  # piped: plain words, no markup
            mark = "yes" if yes else "no"
        return f"{mark}  {value.get('detail', '')}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _amount(resource: str, value: Any) -> str:
    return str(int(value)) if resource == "cpu" else output.size(int(value))


@host_app.command("info")
def host_info(fmt: FormatOpt = Format.table) -> None:
    """Resources, kernel features and accelerators of this host."""
    with client() as c:
        info = c.host_info()
    if output.emit_structured(info, fmt):
        return
    output.key_values([
        ("hostname", info.hostname), ("node", info.node), ("kernel", info.kernel),
        ("cpus", str(info.cpus)), ("memory", output.size(info.memory)),
        ("state dir", info.state_dir),
    ])
    if info.capacity:
        output.table(["RESOURCE", "PHYSICAL", "ALLOCATED", "RATIO", "POLICY MAX"], [
            [name, _amount(name, v["physical"]), _amount(name, v["allocated"]),
             "-" if v["ratio"] is None else f"{v['ratio']:.2f}:1",
             "none" if v["max_ratio"] is None else f"{v['max_ratio']:g}:1"]
            for name, v in info.capacity.items()])
    output.table(["FEATURE", "STATUS"],
                 [[k, _feature_text(v)] for k, v in sorted(info.features.items())])
    for warning in info.warnings:
        output.warn(warning)


@template_app.command("list")
def template_list(fmt: FormatOpt = Format.table) -> None:
    """Installed templates and, in a cluster, the other members' (NODES: where)."""
    with client() as c:
        items = c.list_templates()
    if not output.emit_structured(items, fmt):
        output.table(["NAME", "VERSION", "OS", "ARCH", "KINDS", "SIZE", "SHA256", "NODES"], [
            [t.name, t.version, t.os, t.arch, ",".join(t.kinds), output.size(t.size),
             t.sha256[:12], _nodes(t.nodes, t.installed)] for t in items])


def _nodes(nodes: list[str], installed: bool) -> str:
    """Where a template is; one only other members hold is fetched at its first use here."""
    text = ",".join(nodes) or "-"
    return text if installed else f"{text} (fetched on first use)"


@template_app.command("info")
def template_info(name: str, fmt: FormatOpt = Format.table) -> None:
    """One template."""
    with client() as c:
        t = c.get_template(name)
    if not output.emit_structured(t, fmt):
        output.key_values([("name", t.name), ("version", t.version), ("os", t.os),
                           ("arch", t.arch), ("kinds", ",".join(t.kinds)),
                           ("size", output.size(t.size)), ("sha256", t.sha256),
                           ("nodes", _nodes(t.nodes, t.installed))])


@template_app.command("build")
def template_build(
    name: str,
    if_outdated: Annotated[bool, typer.Option(
        "--if-outdated",
        help="build only if missing or different from what this Corral would build now",
    )] = False,
) -> None:
    """Build a bundled template (e.g. tiny) from this host's Debian packages."""
    with client() as c:
        op = c.build_template(name, if_outdated)
        wait_for(c, op, f"build {name}")
    if op.action == "template-current":
        output.console.print(f"Template [bold]{name}[/] is up to date; nothing built")
    else:
        output.console.print(f"Template [bold]{name}[/] built")
