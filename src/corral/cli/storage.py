"""`corral storage …`, `corral disk list`, `corral clone`, `corral convert`, and
`corral template import|export|delete`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from corral.cli import output
from corral.cli.common import client, fail, wait_for
from corral.cli.host import template_app
from corral.cli.output import Format
from corral.wire.storage import (
    AddDiskRequest,
    CloneRequest,
    CreatePoolRequest,
    DiskChangeModel,
    PoolModel,
)

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or yaml")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="print the operation id and return")]

storage_app = typer.Typer(help="Storage pools", no_args_is_help=True)
disk_app = typer.Typer(help="Instance disks", no_args_is_help=True)


# Templates as files ----------------------------------------------------------------------
@template_app.command("import")
def template_import(
    file: Annotated[Path, typer.Argument(help="a NAME.corral-template file")],
    replace: Annotated[bool, typer.Option(help="replace an installed template")] = False,
) -> None:
    """Install a template file (verified in full first; nothing is installed if it is bad)."""
    with client() as c:
        t = c.import_template(file, replace=replace)
    output.console.print(f"Template [bold]{t.name}[/] {t.version} imported "
                         f"(sha256 {t.sha256[:12]})")


@template_app.command("export")
def template_export(
    name: str,
    file: Annotated[Path | None, typer.Argument(help="default: ./NAME.corral-template")] = None,
) -> None:
    """Write an installed template as one NAME.corral-template file."""
    dest = file or Path(f"{name}.corral-template")
    with client() as c:
        c.export_template(name, dest)
    output.console.print(f"Template [bold]{name}[/] written to {dest} "
                         f"({output.size(dest.stat().st_size)})")


@template_app.command("delete")
def template_delete(name: str) -> None:
    """Delete an installed template (refused while instances use it)."""
    with client() as c:
        c.delete_template(name)
    output.console.print(f"Template [bold]{name}[/] deleted")


# Pools ------------------------------------------------------------------------------------
def _pool_rows(pools: list[PoolModel]) -> list[list[str]]:
    return [[p.name + (" *" if p.default else ""), p.driver, "yes" if p.cow else "no",
             "yes" if p.active else "no", output.size(p.used), output.size(p.total),
             str(p.volumes), p.path] for p in pools]


@storage_app.command("list")
def storage_list(fmt: FormatOpt = Format.table) -> None:
    """Storage pools (* = the default)."""
    with client() as c:
        pools = c.list_pools()
    if not output.emit_structured(pools, fmt):
        output.table(["NAME", "DRIVER", "COW", "ACTIVE", "USED", "SIZE", "DISKS", "PATH"],
                     _pool_rows(pools))


@storage_app.command("info")
def storage_info(name: str, fmt: FormatOpt = Format.table) -> None:
    """One storage pool."""
    with client() as c:
        p = c.get_pool(name)
    if not output.emit_structured(p, fmt):
        output.key_values([
            ("name", p.name), ("driver", p.driver), ("path", p.path),
            ("source", p.source or "-"), ("copy-on-write", "yes" if p.cow else "no"),
            ("active", "yes" if p.active else "no"), ("default", "yes" if p.default else "no"),
            ("used", output.size(p.used)), ("free", output.size(p.free)),
            ("size", output.size(p.total)), ("disks", str(p.volumes)),
        ])


@storage_app.command("create")
def storage_create(
    name: str,
    driver: Annotated[str, typer.Option("--driver", "-d", help="dir or btrfs")],
    path: Annotated[str | None, typer.Option(help="directory / mount point")] = None,
    source: Annotated[str | None, typer.Option(
        help="btrfs: a block device, or a new file (loop-backed)")] = None,
    size: Annotated[str | None, typer.Option(help="btrfs on a new file: its size")] = None,
) -> None:
    """Create a storage pool."""
    with client() as c:
        p = c.create_pool(CreatePoolRequest(name=name, driver=driver, path=path, source=source,
                                            size=size))
    output.console.print(f"Pool [bold]{p.name}[/] ({p.driver}) created at {p.path}"
                         f"{'; copy-on-write clones' if p.cow else ''}")


@storage_app.command("delete")
def storage_delete(name: str) -> None:
    """Delete an empty storage pool (a btrfs pool's backing file goes too)."""
    with client() as c:
        c.delete_pool(name)
    output.console.print(f"Pool [bold]{name}[/] deleted")


# Disks ------------------------------------------------------------------------------------
@disk_app.command("list")
def disk_list(ref: str, fmt: FormatOpt = Format.table) -> None:
    """The disks of an instance."""
    with client() as c:
        disks = c.list_disks(ref)
    if not output.emit_structured(disks, fmt):
        output.table(["NAME", "POOL", "SIZE", "FILESYSTEM", "ALLOCATED", "MOUNT", "PATH"], [
            [d.name, d.pool, output.size(d.size),
             output.size(d.filesystem) if d.filesystem else "-", output.size(d.allocated),
             d.mount or "-", d.path]
            for d in disks])


def _print_change(ref: str, verb: str, change: DiskChangeModel) -> None:
    when = {"now": "done", "live": "live", "next start": "at the next start"}
    done = when.get(change.applied, change.applied)
    text = f"Disk [bold]{change.disk}[/] of {ref} {verb}: {done}"
    output.console.print(text + (f" ({change.note})" if change.note else ""))


@disk_app.command("add")
def disk_add(
    ref: Annotated[str, typer.Argument(help="instance name or id")],
    name: Annotated[str, typer.Argument(help="the disk's name, e.g. data")],
    size: Annotated[str, typer.Option("--size", "-s", help="e.g. 10G")],
    pool: Annotated[str | None, typer.Option(
        help="storage pool (default: the root disk's)")] = None,
    path: Annotated[str | None, typer.Option(
        help="containers: mount point inside (default /mnt/NAME)")] = None,
) -> None:
    """Add an empty ext4 data disk (VM: virtio-blk with serial NAME; CT: mounted at --path)."""
    with client() as c:
        change = c.add_disk(ref, AddDiskRequest(name=name, size=size, pool=pool, path=path))
    _print_change(ref, "added", change)


@disk_app.command("remove")
def disk_remove(ref: str, name: str) -> None:
    """Remove a data disk and delete its image (refused while a guest still uses it)."""
    with client() as c:
        change = c.remove_disk(ref, name)
    _print_change(ref, "removed", change)


@disk_app.command("resize")
def disk_resize(
    ref: str, name: str,
    size: Annotated[str, typer.Argument(help="the new size (grow only), e.g. 20G")],
) -> None:
    """Grow a data disk (shrinking is refused). The root disk grows with `corral set`."""
    with client() as c:
        change = c.resize_disk(ref, name, size)
    _print_change(ref, f"grown to {size}", change)


# Clone and convert ------------------------------------------------------------------------
def clone(
    ref: Annotated[str, typer.Argument(help="a stopped instance")],
    new_name: Annotated[str, typer.Argument(help="the new instance's name")],
    pool: Annotated[str | None, typer.Option(help="put the copies in this pool")] = None,
    no_wait: NoWait = False,
    no_nics: Annotated[bool, typer.Option(
        "--no-nics", help="the clone gets none of the source's NICs")] = False,
) -> None:
    """Copy an instance (copy-on-write where the pool allows it) with its resources, and NICs
    on the same networks with new MACs and addresses."""
    with client() as c:
        op = c.clone_instance(ref, CloneRequest(name=new_name, pool=pool, no_nics=no_nics))
        if no_wait:
            print(op.id)
            return
        done = wait_for(c, op, f"clone {ref} -> {new_name}")
    output.console.print(f"Instance [bold]{new_name}[/] cloned from {ref}")
    if done.phase and done.phase != "done":
        output.console.print(done.phase, highlight=False)


def convert(
    ref: str,
    to: Annotated[str, typer.Option("--to", help="vm or ct")],
    force: Annotated[bool, typer.Option(
        "--force", help="convert a running instance: it is stopped and started again")]
        = False,
    no_wait: NoWait = False,
) -> None:
    """Turn a container into a VM or back: the same disk, a reboot, nothing copied.

    A running instance reboots: that needs --force (on a terminal, a yes at the prompt)."""
    with client() as c:
        running = c.get_instance(ref).state == "running"
        if running and not force and sys.stdin.isatty():
            force = typer.confirm(f"{ref} is running: converting it to a {to} reboots it. "
                                  "Go on?", default=False)
            if not force:
                fail("nothing changed")
        op = c.convert_instance(ref, to, force=force)
        if no_wait:
            print(op.id)
            return
        wait_for(c, op, f"convert {ref} to {to}")
    output.console.print(f"Instance [bold]{ref}[/] is now a {to}"
                         + (" (rebooted)" if running else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(storage_app, name="storage")
    app.add_typer(disk_app, name="disk")
    app.command()(clone)
    app.command()(convert)
