"""`corral snapshot …`, `corral backup …` and `corral restore`."""

from __future__ import annotations

from typing import Annotated

import typer

from corral.cli import bulk, output
from corral.cli.bulk import FailFastOpt, ParallelOpt, SelectorOpt
from corral.cli.common import client, fail, wait_for
from corral.cli.output import Format
from corral.client.backups import BackupCalls
from corral.domain.bulk import BulkAction
from corral.wire.backups import (
    BackupModel,
    PruneRequest,
    RestoreRequest,
    ScheduleRequest,
    SnapshotModel,
    TargetRequest,
    VerifyRequest,
)
from corral.wire.bulk import BulkRequestModel

snapshot_app = typer.Typer(help="Snapshots (with --memory: the running state too)",
                           no_args_is_help=True)
backup_app = typer.Typer(help="Backups to local, NAS and S3 targets", no_args_is_help=True)
target_app = typer.Typer(help="Named backup targets", no_args_is_help=True)
backup_app.add_typer(target_app, name="target")
FormatOpt = Annotated[Format, typer.Option("--format", "-f")]
KeyOpt = Annotated[str | None, typer.Option("--key-file", help="encryption key file")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="print the operation id and return")]
MiB = 1 << 20


def _follow(c: object, op: object, label: str, no_wait: bool) -> str:
    """Follow the operation; its last phase ("" with --no-wait)."""
    from corral.client import CorralClient
    from corral.wire.models import OperationModel

    assert isinstance(c, CorralClient) and isinstance(op, OperationModel)
    if no_wait:
        print(op.id)
        return ""
    return wait_for(c, op, label).phase


# Snapshots ------------------------------------------------------------------------------
@snapshot_app.command("create")
def snapshot_create(
    args: Annotated[list[str], typer.Argument(
        help="NAME SNAPSHOT; several: NAME... SNAPSHOT; with --selector: SNAPSHOT",
        metavar="NAME... SNAPSHOT")],
    memory: Annotated[bool, typer.Option("--memory", help="include the running state")] = False,
    no_wait: NoWait = False, selector: SelectorOpt = None,
    parallel: ParallelOpt = bulk.PARALLEL, fail_fast: FailFastOpt = False,
) -> None:
    """Snapshot an instance (running or stopped), or many under one snapshot name."""
    if (selector is None and len(args) < 2) or (selector is not None and len(args) != 1):
        fail("give NAME SNAPSHOT (several names: NAME... SNAPSHOT; --selector: SNAPSHOT)")
    *refs, snapshot = args
    chosen = bulk.names(refs)
    if bulk.is_bulk(chosen, selector):
        bulk.run(BulkRequestModel(action=BulkAction.SNAPSHOT, names=chosen, selector=selector,
                                  parallel=parallel, fail_fast=fail_fast, snapshot=snapshot,
                                  memory=memory), no_wait)
        return
    name = chosen[0]
    with client() as c:
        _follow(c, BackupCalls(c).snapshot(name, snapshot, memory), f"snapshot {name}", no_wait)
    output.console.print(f"Snapshot {snapshot} of {name} created")


def _tree_lines(snaps: list[SnapshotModel]) -> list[tuple[str, SnapshotModel]]:
    children: dict[str | None, list[SnapshotModel]] = {}
    for s in snaps:
        children.setdefault(s.parent, []).append(s)
    lines: list[tuple[str, SnapshotModel]] = []

    def walk(parent: str | None, prefix: str) -> None:
        kids = children.get(parent, [])
        for i, s in enumerate(kids):
            last = i == len(kids) - 1
            lines.append((prefix + ("└─ " if last else "├─ "), s))
            walk(s.id, prefix + ("   " if last else "│  "))

    walk(None, "")
    return lines


@snapshot_app.command("list")
def snapshot_list(name: str, fmt: FormatOpt = Format.table) -> None:
    """Show an instance's snapshots as a tree (* marks where its present state came from)."""
    with client() as c:
        tree = BackupCalls(c).snapshots(name)
    if output.emit_structured(tree, fmt):
        return
    if not tree.snapshots:
        output.console.print(f"{name} has no snapshots")
        return
    output.table(["SNAPSHOT", "MEMORY", "CREATED", "CONSISTENCY"], [
        [f"{branch}{s.name}{' *' if s.current else ''}", "yes" if s.memory else "no",
         s.created_at[:19], f"{s.consistency} [{s.method}]"]
        for branch, s in _tree_lines(tree.snapshots)])


@snapshot_app.command("revert")
def snapshot_revert(
    name: str, snapshot: str, no_wait: NoWait = False,
    disk_only: Annotated[bool, typer.Option(
        "--disk-only", help="only the disk, even of a snapshot with memory")] = False,
) -> None:
    """Return to a snapshot (one with memory resumes running there; else left stopped)."""
    with client() as c:
        said = _follow(c, BackupCalls(c).revert(name, snapshot, disk_only), f"revert {name}",
                       no_wait)
    output.console.print(f"{name} reverted to {snapshot}" + (f": {said}" if said else ""),
                         highlight=False)


@snapshot_app.command("delete")
def snapshot_delete(name: str, snapshot: str) -> None:
    """Delete one snapshot; its descendants stay valid."""
    with client() as c:
        BackupCalls(c).delete_snapshot(name, snapshot)
    output.console.print(f"Snapshot {snapshot} of {name} deleted")


# Targets --------------------------------------------------------------------------------
@target_app.command("add")
def target_add(
    name: str, url: Annotated[str, typer.Argument(help="/dir, /mnt/nas/dir or s3://bucket/p")],
    key_file: KeyOpt = None,
    access_key: Annotated[str | None, typer.Option(envvar="AWS_ACCESS_KEY_ID")] = None,
    secret_key: Annotated[str | None, typer.Option(envvar="AWS_SECRET_ACCESS_KEY")] = None,
) -> None:
    """Name a backup target (checked and initialised now)."""
    with client() as c:
        t = BackupCalls(c).add_target(TargetRequest(name=name, url=url, key_file=key_file,
                                                    access_key=access_key,
                                                    secret_key=secret_key))
    output.console.print(f"Target {t.name} -> {t.url}{' (encrypted)' if t.encrypted else ''}")


@target_app.command("list")
def target_list(fmt: FormatOpt = Format.table) -> None:
    """The named backup targets."""
    with client() as c:
        targets = BackupCalls(c).targets()
    if not output.emit_structured(targets, fmt):
        output.table(["NAME", "URL", "ENCRYPTED"],
                     [[t.name, t.url, "yes" if t.encrypted else "no"] for t in targets])


@target_app.command("remove")
def target_remove(name: str) -> None:
    """Forget a named target and the schedules that use it (its backups stay where they
    are)."""
    with client() as c:
        BackupCalls(c).remove_target(name)
    output.console.print(f"Target {name} removed")


# Backups --------------------------------------------------------------------------------
ToOpt = Annotated[str, typer.Option("--to", "--target", help="target name, /dir or s3://…")]


@backup_app.command("create")
def backup_create(
    to: ToOpt,
    refs: Annotated[list[str] | None, typer.Argument(
        help="instance name(s); brace ranges expanded; none with --selector")] = None,
    key_file: KeyOpt = None, no_wait: NoWait = False,
    selector: SelectorOpt = None, parallel: ParallelOpt = bulk.PARALLEL,
    fail_fast: FailFastOpt = False,
) -> None:
    """Back up instances online (they keep running) into a target."""
    chosen = bulk.names(refs)
    if bulk.is_bulk(chosen, selector):
        bulk.run(BulkRequestModel(action=BulkAction.BACKUP, names=chosen, selector=selector,
                                  parallel=parallel, fail_fast=fail_fast, target=to,
                                  key_file=key_file), no_wait)
        return
    name = chosen[0]
    with client() as c:
        calls = BackupCalls(c)
        _follow(c, calls.backup(name, to, key_file), f"backup {name}", no_wait)
        if no_wait:
            return
        b = calls.backups(to, name, key_file)[-1]
    s = b.stats
    output.console.print(
        f"Backup {b.id}: {_mib(s.read_bytes)} read, {_mib(s.new_bytes)} new "
        f"({_mib(s.stored_bytes)} stored), {_mib(s.reused_bytes)} deduplicated, "
        f"{s.read_bytes / MiB / max(s.seconds, 1e-3):.0f} MiB/s", highlight=False)


def _mib(n: int) -> str:
    return f"{n / MiB:.1f} MiB"


@backup_app.command("list")
def backup_list(to: ToOpt, name: Annotated[str | None, typer.Argument()] = None,
                key_file: KeyOpt = None, fmt: FormatOpt = Format.table) -> None:
    """List the committed backups in a target (only those of NAME when given)."""
    with client() as c:
        found = BackupCalls(c).backups(to, name, key_file)
    if not output.emit_structured(found, fmt):
        output.table(["BACKUP", "INSTANCE", "TYPE", "OWNER", "CREATED", "DISKS", "NEW",
                      "STORED"], [
            [b.id, b.instance, b.type, b.owner or "-", b.created_at[:19],
             _mib(_disks_size(b)),
             _mib(b.stats.new_bytes), _mib(b.stats.stored_bytes)] for b in found])


def _disks_size(b: BackupModel) -> int:
    """Every disk's size (older backups hold the root disk only)."""
    return sum(x.size for x in b.disks) or b.disk_size


def _info_rows(b: BackupModel) -> list[tuple[str, str]]:
    s = b.stats
    return [("id", b.id), ("instance", f"{b.instance} ({b.type}, id {b.instance_id})"),
            ("template", b.template), ("owner", b.owner or "-"), ("created", b.created_at),
            ("disks", f"{_mib(_disks_size(b))} ({max(1, len(b.disks))} "
                      f"disk{'s' if len(b.disks) > 1 else ''})"),
            ("chunks", f"{b.chunks} x {_mib(b.chunk_size)}"),
            ("parent", b.parent or "-"), ("encrypted", "yes" if b.encrypted else "no"),
            ("consistency", b.consistency), ("method", b.method),
            ("read", _mib(s.read_bytes)), ("new", _mib(s.new_bytes)),
            ("stored", _mib(s.stored_bytes)), ("deduplicated", _mib(s.reused_bytes)),
            ("seconds", f"{s.seconds:.2f}")] + [
            (f"disk {d.name}", f"{_mib(d.size)}, {d.chunks} chunks ({_mib(d.stored)}), "
                               f"{d.method}" + (f", mounted at {d.mount}" if d.mount else ""))
            for d in b.disks]


@backup_app.command("info")
def backup_info(backup: str, to: ToOpt, key_file: KeyOpt = None,
                fmt: FormatOpt = Format.table) -> None:
    """One backup: its instance, every disk, its chunks and what it stored."""
    with client() as c:
        b = BackupCalls(c).backup_info(to, backup, key_file)
    if not output.emit_structured(b, fmt):
        output.key_values(_info_rows(b))


@backup_app.command("verify")
def backup_verify(to: ToOpt, backups: Annotated[list[str] | None, typer.Argument()] = None,
                  key_file: KeyOpt = None, fmt: FormatOpt = Format.table,
                  no_wait: NoWait = False) -> None:
    """Read and check every chunk; name the damaged backups (exit 1 if any)."""
    with client() as c:
        calls = BackupCalls(c)
        op = calls.verify(VerifyRequest(target=to, backups=backups or [], key_file=key_file))
        _follow(c, op, "verify", no_wait)
        if no_wait:
            return
        report = calls.verify_report(op.id)
    if not output.emit_structured(report, fmt):
        output.console.print(f"{report.backups} backups, {report.chunks_checked} chunks checked")
        for b in report.damaged_backups:
            output.console.print(f"DAMAGED {b}", highlight=False)
        for m in report.unreadable_manifests:
            output.console.print(f"UNREADABLE MANIFEST {m}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@backup_app.command("delete")
def backup_delete(backup: str, to: ToOpt, key_file: KeyOpt = None) -> None:
    """Delete one backup, and the chunks no other backup in the target uses."""
    with client() as c:
        BackupCalls(c).delete_backup(to, backup, key_file)
    output.console.print(f"Backup {backup} deleted")


KeepLast = Annotated[int, typer.Option("--keep-last", help="keep the newest N backups")]
KeepDaily = Annotated[int, typer.Option(
    "--keep-daily", help="keep the newest backup of each of the last N days that have one")]
KeepWeekly = Annotated[int, typer.Option(
    "--keep-weekly", help="keep the newest backup of each of the last N weeks that have one")]
KEEP_HELP = ("KEEP is the retention after each run: a backup any rule keeps stays; 'all' "
             "when no --keep-* rule is set (nothing is pruned).")


def keep_text(last: int, daily: int, weekly: int) -> str:
    """The retention rules in words: "newest 3, 7 daily, 4 weekly", or "all"."""
    rules = [text for count, text in ((last, f"newest {last}"), (daily, f"{daily} daily"),
                                      (weekly, f"{weekly} weekly")) if count]
    return ", ".join(rules) or "all"


@backup_app.command("prune")
def backup_prune(to: ToOpt, name: Annotated[str | None, typer.Argument()] = None,
                 keep_last: KeepLast = 0, keep_daily: KeepDaily = 0, keep_weekly: KeepWeekly = 0,
                 key_file: KeyOpt = None) -> None:
    """Delete backups the retention rules do not keep, then their unused chunks."""
    with client() as c:
        r = BackupCalls(c).prune(PruneRequest(
            target=to, instance=name, keep_last=keep_last, keep_daily=keep_daily,
            keep_weekly=keep_weekly, key_file=key_file))
    output.console.print(f"kept {len(r.kept)}, deleted {len(r.deleted)} backups "
                         f"and {r.chunks_deleted} chunks")


schedule_app = typer.Typer(help="Daily backups corrald runs.", no_args_is_help=True)
backup_app.add_typer(schedule_app, name="schedule")


@schedule_app.command("list", help=f"The backup schedules. {KEEP_HELP}")
def schedule_list(fmt: FormatOpt = Format.table) -> None:
    with client() as c:
        found = BackupCalls(c).schedules()
    if output.emit_structured(found, fmt):
        return
    output.table(["INSTANCE", "TARGET", "DAILY", "NEXT RUN", "KEEP", "LAST RUN"], [
        [s.instance, s.target, f"{s.daily} {s.tz}", _when(s.next_run),
         keep_text(s.keep_last, s.keep_daily, s.keep_weekly), _when(s.last_run)]
        for s in found])


def _when(iso: str | None) -> str:
    """An ISO time with its zone's offset, to the minute: ``2026-12-07 01:00 +01:00``."""
    if iso is None:
        return "-"
    return f"{iso[:16].replace('T', ' ')} {iso[-6:]}" if len(iso) >= 22 else iso


@schedule_app.command("remove")
def schedule_remove(name: str, to: ToOpt) -> None:
    """Stop backing NAME up to --to on schedule."""
    with client() as c:
        BackupCalls(c).remove_schedule(name, to)
    output.console.print(f"{name}: no more scheduled backups to {to}")


@schedule_app.command("set")
def backup_schedule(
    name: str, to: ToOpt, daily: Annotated[str, typer.Option("--daily", help="HH:MM")],
    keep_last: KeepLast = 0, keep_daily: KeepDaily = 0, keep_weekly: KeepWeekly = 0,
    tz: Annotated[str | None, typer.Option(
        "--tz", help="time zone of --daily, e.g. Europe/Berlin (default: corrald host's)",
    )] = None,
) -> None:
    """Back NAME up every day at --daily (corrald runs it), then prune NAME's backups in
    the target by the --keep-* rules (none: keep all). The first backup is at the next
    --daily time (tomorrow if it passed today)."""
    with client() as c:
        made = BackupCalls(c).set_schedule(name, ScheduleRequest(
            target=to, daily=daily, tz=tz, keep_last=keep_last, keep_daily=keep_daily,
            keep_weekly=keep_weekly))
    output.console.print(f"{name}: daily backup at {made.daily} {made.tz} to {to}; "
                         f"next run {_when(made.next_run)}", highlight=False)


def restore(
    backup: str, target: ToOpt,
    as_name: Annotated[str | None, typer.Option("--as", help="restore as a new instance")] = None,
    key_file: KeyOpt = None, no_wait: NoWait = False,
    no_nics: Annotated[bool, typer.Option(
        "--no-nics", help="a new instance gets none of the backup's NICs")] = False,
) -> None:
    """Restore a backup: over its (stopped) instance, or --as a new one (with its resources,
    and NICs on the same networks with new MACs and addresses)."""
    with client() as c:
        op = BackupCalls(c).restore(backup, RestoreRequest(target=target, as_name=as_name,
                                                           key_file=key_file,
                                                           no_nics=no_nics))
        said = _follow(c, op, f"restore {backup}", no_wait)
    if not no_wait:
        output.console.print(f"Restored {backup}" + (f" as {as_name}" if as_name else "")
                             + (f": {said}" if said else ""), highlight=False)



