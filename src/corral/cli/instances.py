"""Instance commands: create, start, stop, restart, suspend, resume, delete, list, info, exec."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Annotated

import typer

from corral.cli import bulk, output
from corral.cli.bulk import FailFastOpt, ParallelOpt, SelectorOpt, YesOpt
from corral.cli.common import client, each, fail, wait_for
from corral.cli.output import Format
from corral.cli.resources import assignments
from corral.client import ApiError, CorralClient
from corral.client.client import ExecOutcome
from corral.domain.bulk import BulkAction, next_number, numbered
from corral.domain.errors import CorralError
from corral.domain.labels import parse_assignments
from corral.wire.bulk import BulkCreate, BulkRequestModel
from corral.wire.models import CreateRequest, InstanceModel, ResourcesModel, StopRequest

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or yaml")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="print the operation id and return")]


def create(
    name: Annotated[str, typer.Argument(
        help="a DNS label, e.g. web1; several names or a brace range (web-{1..100}) make "
             "many at once")],
    type_: Annotated[str, typer.Option("--type", "-t", help="ct (container) or vm")],
    template: Annotated[str, typer.Option("--template", help="e.g. tiny")] = "tiny",
    cpus: Annotated[str | None, typer.Option(help="virtual CPUs")] = None,
    memory: Annotated[str | None, typer.Option(help="e.g. 256M, 1G")] = None,
    disk: Annotated[str | None, typer.Option(help="root disk size, e.g. 1G")] = None,
    privileged: Annotated[bool, typer.Option(help="containers: no user namespace")] = False,
    start: Annotated[bool, typer.Option("--start", help="start it once created")] = False,
    pool: Annotated[str | None, typer.Option(help="storage pool of the root disk")] = None,
    image: Annotated[str | None, typer.Option(
        help="VMs: a raw/qcow2 disk image to boot through the firmware (copied into the "
             "pool)")] = None,
    iso: Annotated[str | None, typer.Option(
        help="VMs: an installer ISO; a blank disk of --disk size, VNC console")] = None,
    owner: Annotated[str | None, typer.Option(
        help="the user it belongs to (sees it, backs it up, restores it)")] = None,
    no_wait: NoWait = False,
    node: Annotated[str | None, typer.Option(
        help="in a cluster: the member to create it on (default: placement picks one)")]
        = None,
    count: Annotated[int | None, typer.Option(
        "--count", help="make N instances named NAME-1 … NAME-N (or NAME with {n} in it), "
                        "numbered after the highest NAME-<n> that exists")
    ] = None,
    first: Annotated[int | None, typer.Option(
        "--first", help="with --count: the first number (default: after the highest taken)")
    ] = None,
    parallel: ParallelOpt = bulk.PARALLEL,
    label: Annotated[list[str] | None, typer.Option(
        "--label", help="key=value label on the new instance(s), repeatable")] = None,
    group: Annotated[str | None, typer.Option(
        help="a placement group (`corral group create`): placement keeps its rule")] = None,
    require: Annotated[list[str] | None, typer.Option(
        "--require", help="a feature the member must have: criu, kvm, vlan (repeatable)")]
        = None,
    settings: Annotated[list[str] | None, typer.Argument(
        help="resource key=value … as for `corral set` (e.g. cpu_limit=50 io_iops=300)")] = None,
) -> None:
    """Create an instance from a template, or a VM from a disk image or an ISO."""
    extra = [s for s in settings or [] if "=" not in s]  # more names (a shell's web-{1..3})
    settings = [s for s in settings or [] if "=" in s]
    try:
        labels = parse_assignments(label) if label else {}
        if count is not None and extra:
            fail("--count takes one name pattern")
        if first is not None and count is None:
            fail("--first goes with --count")
        made_names = (numbered(name, count, _first_number(name, first)) if count is not None
                      else bulk.names([name, *extra]))
    except CorralError as exc:
        fail(exc.message)
    if len(made_names) > 1 or count is not None:
        if image or iso or node or group or require:
            fail("--image, --iso, --node, --group and --require make one instance at a time "
                 "(a bulk create runs on this host)")
        spec = BulkCreate(type=type_, template=template, cpus=cpus, memory=memory, disk=disk,
                          privileged=privileged, start=start, resources=assignments(settings),
                          pool=pool, owner=owner, labels=labels)
        bulk.run(BulkRequestModel(action=BulkAction.CREATE, names=made_names,
                                  parallel=parallel, create=spec), no_wait)
        return
    name = made_names[0]
    request = CreateRequest(
        name=name, type=type_, template=template, cpus=cpus, memory=memory, disk=disk,
        privileged=privileged, start=start, resources=assignments(settings), pool=pool,
        image=_absolute(image), iso=_absolute(iso), owner=owner, node=node, group=group,
        require=list(require or []),
    )
    with client() as c:
        op = c.create_instance(request)
        if no_wait:
            print(op.id)
            return
        wait_for(c, op, f"create {name}")
        if labels:
            c.change_labels(name, labels)
        made = c.get_instance(name)
    where = f" on {made.node}" if node is None and made.node else ""
    output.console.print(f"Created {made.type} [bold]{made.name}[/] (id {made.id}), "
                         f"{made.state}{where}")


def _first_number(pattern: str, first: int | None) -> int:
    if first is not None:
        return first
    with client() as c:
        return next_number(pattern, (i.name for i in c.list_instances()))


def _absolute(path: str | None) -> str | None:
    """Image paths are read by the daemon (on this host over the Unix socket)."""
    return None if path is None else os.path.abspath(path)


RefsArg = Annotated[list[str] | None, typer.Argument(
    help="names or ids (brace ranges such as web-{1..10} expanded)")]


def _lifecycle(action: BulkAction, refs: list[str] | None, selector: str | None,
               parallel: int, fail_fast: bool, no_wait: bool,
               single: Callable[[list[str]], None], **options: object) -> None:
    """One name: ``single`` (the command as ever). Several, or a selector: one bulk
    operation with a result per instance."""
    chosen = bulk.names(refs)
    if not bulk.is_bulk(chosen, selector):
        single(chosen)
        return
    request = BulkRequestModel.model_validate(dict(
        action=action, names=chosen, selector=selector, parallel=parallel,
        fail_fast=fail_fast, **options))
    bulk.run(request, no_wait)


def start(refs: RefsArg = None, selector: SelectorOpt = None, parallel: ParallelOpt = bulk.PARALLEL,
          fail_fast: FailFastOpt = False, no_wait: NoWait = False) -> None:
    """Start instances."""
    _lifecycle(BulkAction.START, refs, selector, parallel, fail_fast, no_wait,
               lambda r: each(r, lambda c, r, w: c.action(r, "start", wait=w), "start", no_wait))


def stop(
    refs: RefsArg = None,
    force: Annotated[bool, typer.Option("--force", help="power off at once")] = False,
    timeout: Annotated[float, typer.Option(help="seconds of grace before forcing")] = 30.0,
    selector: SelectorOpt = None, parallel: ParallelOpt = bulk.PARALLEL,
    fail_fast: FailFastOpt = False, no_wait: NoWait = False,
) -> None:
    """Shut instances down gracefully (then force after --timeout)."""
    body = StopRequest(force=force, timeout=timeout)
    _lifecycle(BulkAction.STOP, refs, selector, parallel, fail_fast, no_wait,
               lambda r: each(r, lambda c, r, w: c.action(r, "stop", body, wait=w), "stop",
                              no_wait), force=force, timeout=timeout)


def restart(
    refs: RefsArg = None,
    force: Annotated[bool, typer.Option("--force")] = False,
    timeout: Annotated[float, typer.Option()] = 30.0,
    selector: SelectorOpt = None, parallel: ParallelOpt = bulk.PARALLEL,
    fail_fast: FailFastOpt = False, no_wait: NoWait = False,
) -> None:
    """Stop and start instances."""
    body = StopRequest(force=force, timeout=timeout)
    _lifecycle(BulkAction.RESTART, refs, selector, parallel, fail_fast, no_wait,
               lambda r: each(r, lambda c, r, w: c.action(r, "restart", body, wait=w),
                              "restart", no_wait), force=force, timeout=timeout)


def suspend(refs: Annotated[list[str], typer.Argument()], no_wait: NoWait = False) -> None:
    """Pause instances (VM: vCPUs stopped; CT: cgroup freezer)."""
    each(refs, lambda c, r, w: c.action(r, "suspend", wait=w), "suspend", no_wait)


def resume(refs: Annotated[list[str], typer.Argument()], no_wait: NoWait = False) -> None:
    """Resume suspended instances."""
    each(refs, lambda c, r, w: c.action(r, "resume", wait=w), "resume", no_wait)


def delete(
    refs: RefsArg = None,
    force: Annotated[bool, typer.Option("--force", help="stop it first if running")] = False,
    selector: SelectorOpt = None, parallel: ParallelOpt = bulk.PARALLEL,
    fail_fast: FailFastOpt = False, yes: YesOpt = False, no_wait: NoWait = False,
) -> None:
    """Delete instances and their disks (more than 3, or by --selector: asks first)."""
    chosen = bulk.names(refs)
    if not bulk.is_bulk(chosen, selector):
        each(chosen, lambda c, r, _w: c.delete_instance(r, force=force), "delete", no_wait)
        return
    with client() as c:
        chosen = bulk.confirm_delete(c, chosen, selector, yes)
    bulk.run(BulkRequestModel(action=BulkAction.DELETE, names=chosen, parallel=parallel,
                              fail_fast=fail_fast, force=force), no_wait)


def _row(i: InstanceModel) -> list[str]:
    r = i.resources
    return [str(i.id), i.name, i.type, i.state, str(r.cpus), output.setting_size(r.memory),
            output.setting_size(r.disk), ", ".join(i.ip) or "-", i.owner or "-", i.node]


def list_(
    fmt: FormatOpt = Format.table,
    node: Annotated[str | None, typer.Option(
        "--node", help="only the instances of this cluster member")] = None,
    selector: SelectorOpt = None,
) -> None:
    """List instances (in a cluster: of every member, NODE says where; with --selector:
    those whose labels match, on every member)."""
    with client() as c:
        items = c.list_instances(node, selector)
    if not output.emit_structured(items, fmt):
        columns = ["ID", "NAME", "TYPE", "STATE", "CPUS", "MEMORY", "DISK", "IP", "OWNER",
                   "NODE"]
        output.table(columns, [_row(i) for i in items])


def _set_limits(r: ResourcesModel) -> list[tuple[str, str]]:
    """The optional resource keys that are set (not None), in ``corral set``'s units."""
    def rate(v: object) -> str:
        return f"{output.size(int(str(v)))}/s"

    def size(v: object) -> str:
        return output.setting_size(int(str(v)))

    shown: list[tuple[str, Callable[[object], str]]] = [
        ("max_cpus", str), ("cpu_limit", lambda v: f"{v}% of one CPU"), ("cpu_shares", str),
        ("cpu_pin", str), ("memory_min", size), ("swap", size), ("io_read_bps", rate),
        ("io_write_bps", rate), ("io_iops", lambda v: f"{v}/s"), ("pids", str),
    ]
    return [(key, render(value)) for key, render in shown
            if (value := getattr(r, key)) is not None]


def info(ref: Annotated[str, typer.Argument()], fmt: FormatOpt = Format.table) -> None:
    """Show one instance."""
    with client() as c:
        i = c.get_instance(ref)
    if output.emit_structured(i, fmt):
        return
    r = i.resources
    output.key_values([
        ("id", str(i.id)), ("name", i.name), ("type", i.type), ("state", i.state),
        *([("stop reason", i.stop_reason)] if i.stop_reason else []),
        ("template", i.template), ("cpus", str(r.cpus)),
        ("memory", output.setting_size(r.memory)),
        ("disk", output.setting_size(r.disk)), *_set_limits(r),
        ("privileged", str(i.privileged).lower()),
        ("ip", ", ".join(i.ip) or "-"), ("pid", str(i.pid or "-")),
        *([("agent", i.agent)] if i.agent else []),
        ("owner", i.owner or "-"), ("node", i.node),
        ("labels", ",".join(f"{k}={v}" for k, v in sorted(i.labels.items())) or "-"),
        *([("group", i.group)] if i.group else []),
        ("created", i.created_at), ("operation", i.operation or "-"),
    ])


def exec_(
    ref: Annotated[str, typer.Argument(
        help="instance name or id; several: web1,web2 or web-{1..3}; none with --selector")],
    argv: Annotated[list[str] | None, typer.Argument(help="the command, after --")] = None,
    timeout: Annotated[float, typer.Option(
        help="seconds before the command is killed; 0: no limit")] = 0,
    stdin: Annotated[bool, typer.Option("--stdin", "-i", help="send this command's stdin")] = False,
    selector: SelectorOpt = None, parallel: ParallelOpt = bulk.PARALLEL,
    fail_fast: FailFastOpt = False,
) -> None:
    """Run a command inside an instance; exit with its exit code. On several instances:
    a result per instance (exit status, last line of output), exit 1 if any failed."""
    # With --selector there is no instance argument: the first word is the command's (a
    # one-word command such as `-- uptime` is all in ``ref``, so ``argv`` may be empty).
    if selector is not None:
        argv, chosen = [ref, *(argv or [])], []
    else:
        chosen = bulk.names(ref.split(","))
    if not argv:
        fail("give the command to run after --, e.g. corral exec web1 -- uname -a", 2)
    if bulk.is_bulk(chosen, selector):
        if stdin:
            fail("--stdin runs on one instance at a time")
        bulk.run(BulkRequestModel(action=BulkAction.EXEC, names=chosen, selector=selector,
                                  parallel=parallel, fail_fast=fail_fast, argv=argv,
                                  timeout=timeout or None))
        return
    ref = chosen[0]
    data = sys.stdin.buffer.read() if stdin else b""
    with client() as c:
        done = _run_saying_why_it_waits(c, ref, argv, data, timeout or None)
    sys.stdout.buffer.write(done.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(done.stderr)
    sys.stderr.flush()
    if done.timed_out:
        fail(f"'{' '.join(argv)}' was killed after --timeout {timeout:g} s", 124)
    if done.exit_code != 0:
        raise typer.Exit(done.exit_code)


HINT_AFTER = 1.0  # seconds without an answer before exec says what it waits for


def _run_saying_why_it_waits(c: CorralClient, ref: str, argv: list[str], data: bytes,
                             timeout: float | None) -> ExecOutcome:
    """``c.run``; if it has not answered after a second because the VM's guest agent is not
    up yet (the guest still boots), say so on stderr rather than hang without a word."""
    answer: list[ExecOutcome] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            answer.append(c.run(ref, argv, data, timeout))
        except BaseException as exc:  # raised again in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(HINT_AFTER)
    if worker.is_alive():
        try:
            with CorralClient() as other:  # ``c``'s connection waits for the answer
                agent = other.get_instance(ref).agent
        except ApiError:
            agent = None
        if agent == "waiting":
            print(f"waiting for the guest agent of {ref} (the VM is still booting)...",
                  file=sys.stderr, flush=True)
        worker.join()
    if failure:
        raise failure[0]
    return answer[0]


def require(value: str | None, what: str) -> str:
    if not value:
        fail(f"{what} is required")
    return value
