"""`corral migrate`, `corral remote add|list|remove`, `corral host join|pairing`,
`corral migration list|show|resolve`."""

from __future__ import annotations

import contextlib
from typing import Annotated, Literal

import typer

from corral.cli import bulk, output
from corral.cli.bulk import FailFastOpt, ParallelOpt, SelectorOpt
from corral.cli.common import client, fail, wait_for
from corral.cli.output import Format
from corral.client import migration as api
from corral.domain.bulk import BulkAction
from corral.domain.errors import CorralError
from corral.domain.sizes import parse_size
from corral.wire.bulk import BulkRequestModel
from corral.wire.migration import (
    AddRemoteRequest,
    JoinRequest,
    MigrateRequest,
    MigrationModel,
)

AUTO = "auto"
"""As a migration's TARGET: placement picks a member for each instance (a cluster)."""

remote_app = typer.Typer(help="Paired hosts (remotes)", no_args_is_help=True)
migration_app = typer.Typer(help="Migration records", no_args_is_help=True)
FormatOpt = Annotated[Format, typer.Option("--format", "-f")]


@remote_app.command("add")
def remote_add(
    name: str, url: str,
    token: Annotated[str, typer.Option(help="the peer's API token")],
    fingerprint: Annotated[str | None, typer.Option(
        help="expected sha256 certificate fingerprint (`corral host pairing` there)")] = None,
) -> None:
    """Pair with the corrald at URL (https://HOST:PORT): pin its certificate, keep its token."""
    with client() as c:
        remote = api.add_remote(c, AddRemoteRequest(name=name, url=url, token=token,
                                                    fingerprint=fingerprint))
    trust = "verified" if fingerprint else "trusted on first use"
    output.console.print(f"Remote [bold]{remote.name}[/] at {remote.url}: certificate "
                         f"{remote.fingerprint} ({trust})", highlight=False)


@remote_app.command("list")
def remote_list(fmt: FormatOpt = Format.table) -> None:
    """Paired remotes."""
    with client() as c:
        items = api.list_remotes(c)
    if not output.emit_structured(items, fmt):
        output.table(["NAME", "URL", "FINGERPRINT", "ADDED"],
                     [[r.name, r.url, r.fingerprint, r.created_at] for r in items])


@remote_app.command("remove")
def remote_remove(name: str) -> None:
    """Forget a remote."""
    with client() as c:
        api.remove_remote(c, name)
    output.console.print(f"Remote [bold]{name}[/] removed")


def host_join(
    name: str, url: str,
    token: Annotated[str, typer.Option(help="the peer's API token")],
    fingerprint: Annotated[str | None, typer.Option(help="expected certificate")] = None,
    as_name: Annotated[str | None, typer.Option("--as", help="our name there")] = None,
) -> None:
    """Pair both ways: add URL as remote NAME here, and this host as a remote there."""
    with client() as c:
        remote = api.join(c, JoinRequest(name=name, url=url, token=token,
                                         fingerprint=fingerprint, as_name=as_name))
    output.console.print(f"Joined [bold]{remote.name}[/] at {remote.url} "
                         f"({remote.fingerprint}); it knows this host too", highlight=False)


def host_pairing(fmt: FormatOpt = Format.table) -> None:
    """What a peer needs to pair with this host: URL and certificate fingerprint."""
    with client() as c:
        info = api.pairing(c)
    if not output.emit_structured(info, fmt):
        output.key_values([("node", info.node), ("url", info.url or "(no --listen)"),
                           ("fingerprint", info.fingerprint)])


def _result(m: MigrationModel) -> str:
    d = m.details
    parts = [f"path: {m.path} — {d.get('why', '')}"]
    if d.get("downtime_ms") is not None:
        parts.append(f"downtime {d['downtime_ms']} ms")
    if d.get("qemu_downtime_ms") is not None:
        parts.append(f"(QEMU: {d['qemu_downtime_ms']} ms)")
    if d.get("dump_ms") is not None:
        parts.append(f"(dump {d['dump_ms']} ms, delta and files {d.get('send_ms')} ms, "
                     f"restore {d.get('commit_ms')} ms; CRIU's own: dump "
                     f"{d.get('criu_dump_ms')} ms, restore {d.get('criu_restore_ms')} ms)")
    if d.get("delta_ms") is not None:
        how = d.get("quiesced", "released")
        parts.append(f"transfer: files and dump {d.get('files_ms')} ms, then disks {how} "
                     f"{d.get('settle_ms')} ms, final delta {d['delta_ms']} ms")
    for key, label in (("dump_phases", "dump"), ("quiesce_phases", "disks"),
                       ("restore_phases", "restore")):
        if d.get(key):
            parts.append(f"{label}: " + ", ".join(f"{k} {v} ms" for k, v in d[key].items()))
    if d.get("total_ms") is not None:
        parts.append(f"total {d['total_ms'] / 1000:.2f} s")
    for key, label in (("disk_bytes", "disk"), ("ram_bytes", "RAM")):
        if d.get(key):
            parts.append(f"{label} {output.size(int(d[key]))}")
    if d.get("id_changed"):
        parts.append(f"id changed {d['id_changed']} (the source id was taken there)")
    said = ""
    for part in parts:  # a parenthesis explains the figure before it: no comma between
        said += part if not said else (" " if part.startswith("(") else ", ") + part
    return said


def migrate(
    args: Annotated[list[str], typer.Argument(
        metavar="NAME... TARGET",
        help="the instance(s) (web1,web2 or web-{1..3}; none with --selector), then where "
             "to: a remote (corral remote list), a cluster member, or 'auto' (placement "
             "picks a member for each instance)")],
    live: Annotated[bool, typer.Option("--live", help="live (the default when running)")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="stop, copy, start there")] = False,
    bandwidth: Annotated[str | None, typer.Option(
        help="bytes per second, e.g. 100M")] = None,
    downtime: Annotated[int, typer.Option(help="VM downtime limit in ms")] = 100,
    no_wait: Annotated[bool, typer.Option("--no-wait")] = False,
    selector: SelectorOpt = None, parallel: ParallelOpt = bulk.PARALLEL,
    fail_fast: FailFastOpt = False,
) -> None:
    """Move instances to another host; says which path it took, its downtime and time.
    Several (or --selector, or TARGET auto): one bulk operation, a result per instance."""
    if live and offline:
        fail("--live and --offline exclude each other")
    host = args[-1]
    chosen = bulk.names(args[:-1])
    if bulk.is_bulk(chosen, selector) or host == AUTO:
        if not chosen and selector is None:
            fail("name the instance(s) to migrate and the target (or --selector … TARGET)")
        if live or offline or bandwidth or downtime != 100:
            fail("--live, --offline, --bandwidth and --downtime apply to one instance "
                 "migrated to a named host; a bulk migration takes each one's best path")
        bulk.run(BulkRequestModel(action=BulkAction.MIGRATE, names=chosen, selector=selector,
                                  parallel=parallel, fail_fast=fail_fast,
                                  target=None if host == AUTO else host), no_wait)
        return
    if not chosen:
        fail("name the instance to migrate and the target: corral migrate NAME TARGET")
    name = chosen[0]
    try:
        rate = parse_size(bandwidth, "--bandwidth") if bandwidth else None
    except CorralError as exc:
        fail(exc.message)
    mode: Literal["auto", "live", "offline"] = (
        "live" if live else "offline" if offline else "auto")
    with client() as c:
        op = api.migrate(c, name, MigrateRequest(target=host, mode=mode, bandwidth=rate,
                                                 downtime_ms=downtime))
        if no_wait:
            print(op.id)
            return
        try:
            wait_for(c, op, f"migrate {name} → {host}")
        except typer.Exit:
            record = None
            with contextlib.suppress(Exception):  # the error itself is printed already
                record = api.get_migration(c, op.id)
            if record is not None and record.status == "unresolved":
                output.errors.print(f"{name} is kept stopped on this host: the target may "
                                    f"run it (corral info {name}; corral migration resolve "
                                    f"{name} --keep-source|--keep-target)", highlight=False)
            elif record is not None:
                output.errors.print(f"{name} stays on this host ({record.phase}); "
                                    f"path was {record.path}", highlight=False)
            raise
        record = api.get_migration(c, op.id)
    output.console.print(f"Migrated [bold]{name}[/] to [bold]{host}[/]: {_result(record)}",
                         highlight=False)


def _row(m: MigrationModel) -> list[str]:
    d = m.details
    return [m.id[:8], m.direction, m.instance, m.peer, m.path, m.status,
            "" if d.get("downtime_ms") is None else f"{d['downtime_ms']} ms",
            "" if d.get("total_ms") is None else f"{d['total_ms'] / 1000:.2f} s",
            m.error or m.phase]


@migration_app.command("list")
def migration_list(fmt: FormatOpt = Format.table) -> None:
    """Migrations to and from this host, newest first."""
    with client() as c:
        items = api.list_migrations(c)
    if not output.emit_structured(items, fmt):
        output.table(["ID", "DIR", "INSTANCE", "PEER", "PATH", "STATUS", "DOWNTIME", "TOTAL",
                      "PHASE/ERROR"], [_row(m) for m in items])


@migration_app.command("show")
def migration_show(ref: str, fmt: FormatOpt = Format.table) -> None:
    """One migration, by its id or its operation's id."""
    with client() as c:
        m = api.get_migration(c, ref)
    if not output.emit_structured(m, fmt):
        output.key_values([("id", m.id), ("direction", m.direction), ("instance", m.instance),
                           ("peer", m.peer), ("path", m.path), ("status", m.status),
                           ("phase", m.phase), ("result", _result(m)),
                           ("error", m.error or "")])


@migration_app.command("resolve")
def migration_resolve(
    name: str,
    keep_source: Annotated[bool, typer.Option(
        "--keep-source", help="the copy here lives on (started if it ran); if the target "
        "did commit, its copy stays there too: delete one")] = False,
    keep_target: Annotated[bool, typer.Option(
        "--keep-target", help="the target's copy lives on (the one here is removed)")] = False,
) -> None:
    """Decide a migration left unresolved (the target unreachable after the commit was
    asked): which copy lives on. Corral asks the target first; its answer, if any, wins."""
    if keep_source == keep_target:
        fail("say which copy lives on: --keep-source or --keep-target")
    with client() as c:
        m = api.resolve(c, name, "source" if keep_source else "target")
    output.console.print(f"{name}: migration {m.id[:8]} to {m.peer} {m.status} "
                         f"({m.error or m.details.get('resolved', m.phase)})", highlight=False)
