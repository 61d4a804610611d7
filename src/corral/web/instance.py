"""One instance: state and actions, resources editable live (each change says whether it
applied live or at the next start), NICs, disks, snapshots (create, revert), backups
(restore), and its operations. Each part and each change asks the policy by the API
action's name, and calls the service that API route calls."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from corral.domain.errors import CorralError, NotFound
from corral.domain.lifecycle import Action, allowed
from corral.domain.resources import Resources, apply_settings
from corral.domain.sizes import format_size
from corral.domain.statuses import OperationStatus
from corral.services.instances import InstanceView
from corral.web.pages import Ctx, Page, attempt
from corral.web.session import PATH

router = APIRouter(prefix=PATH, include_in_schema=False)

ACTIONS = ("start", "stop", "restart", "suspend", "resume")
EDITABLE = ("cpus", "memory", "disk", "cpu_limit", "cpu_shares", "memory_min", "cpu_pin",
            "swap", "io_read_bps", "io_write_bps", "io_iops", "pids")
SIZED = frozenset({"memory", "disk", "memory_min", "swap", "io_read_bps", "io_write_bps"})
ACTION_WAIT = 60.0


def view_of(page: Page, ref: str) -> InstanceView:
    """The instance as ``show_instance`` gives it: another owner's answers 404."""
    page.require("show_instance")
    if page.policy.admin:
        return page.app.instances.get(ref)
    return page.app.instances.view(page.policy.find_instance(page.app.store.get_instance, ref))


def shown(resources: Resources) -> dict[str, str]:
    values: dict[str, str] = {}
    for key in EDITABLE:
        value = getattr(resources, key)
        values[key] = "" if value is None else (
            format_size(int(value)) if key in SIZED else str(value))
    return values


def _optional(page: Page, action: str, read: Any) -> Any:
    """A panel's content if the policy allows ``action``, else None (not shown)."""
    if not page.may(action):
        return None
    try:
        return read()
    except CorralError as exc:
        return exc


def details(page: Page, view: InstanceView) -> dict[str, Any]:
    name = view.record.name
    app = page.app

    def backups() -> list[tuple[str, Any]]:
        found = []
        for target in app.backups.targets():
            found += [(target.name, m) for m in page.policy.backups(
                app.backups.list_backups(target.name, name))]
        return sorted(found, key=lambda tm: tm[1].created_at, reverse=True)

    def operations() -> list[Any]:
        return [op for op in app.store.list_operations(500, page.policy.operations_filter)
                if op.instance == name][:20]

    return {
        "view": view, "rec": view.record, "values": shown(view.record.resources),
        "nics": _optional(page, "list_nics", lambda: app.networks.list_nics(name)),
        "disks": _optional(page, "list_disks", lambda: app.disks.list(name)),
        "snapshots": _optional(page, "list_snapshots", lambda: app.snapshots.tree(name)),
        "backups": _optional(page, "list_backups", backups),
        "targets": _optional(page, "create_backup",
                             lambda: [t.name for t in app.backups.targets()]),
        "operations": _optional(page, "list_operations", operations),
        "remotes": _optional(page, "list_remotes",
                             lambda: [r.name for r in app.remotes.list()]),
        "actions": [a for a in ACTIONS if page.may(f"{a}_instance")
                    and allowed(Action(a), view.state)],
    }


def _page(page: Page, ref: str, status: int = 200, **extra: Any) -> HTMLResponse:
    values = {**details(page, view_of(page, ref)), **extra}
    part = page.request.headers.get("hx-target", "")
    name = "_instance_state.html" if part == "instance-state" else "instance.html"
    return page.render(name, status=status, **values)


@router.get("/instances/{ref}", response_class=HTMLResponse)
def instance_page(page: Ctx, ref: str) -> HTMLResponse:
    return _page(page, ref)


def _ended(page: Page, op_id: str) -> str | None:
    """None if the operation succeeded, else what went wrong."""
    op = page.app.operations.wait(op_id, ACTION_WAIT)
    if op.status is OperationStatus.SUCCESS:
        return None
    if not op.status.final:
        return f"operation {op.id} is still running ({op.phase or op.action})"
    return op.error or f"operation {op.id} ended {op.status.value}"


@router.post("/instances/{ref}/action/{verb}", response_class=HTMLResponse)
def instance_action(page: Ctx, ref: str, verb: str) -> Response:
    if verb not in ACTIONS:
        raise NotFound(f"no action '{verb}'")
    view = view_of(page, ref)
    page.require(f"{verb}_instance")
    action = getattr(page.app.instances, verb)
    op, errors = attempt(lambda: action(view.record.name), ())
    problem = errors.get("") if op is None else _ended(page, op.id)
    return _page(page, view.record.name, notice=None if problem else f"{verb}: done",
                 problem=problem)


@router.post("/instances/{ref}/delete", response_class=HTMLResponse)
def delete_instance(page: Ctx, ref: str, confirm: Annotated[str, Form()] = "") -> Response:
    view = view_of(page, ref)
    page.require("delete_instance")
    if confirm != view.record.name:
        return _page(page, ref, 400, problem=f"type the instance's name ({view.record.name}) "
                     "to confirm the delete")
    op = page.app.instances.delete(view.record.name, force=True)
    problem = _ended(page, op.id)
    if problem:
        return _page(page, ref, 409, problem=problem)
    return page.redirect(f"{PATH}/instances")


async def _form_values(request: Request, keys: tuple[str, ...]) -> dict[str, str]:
    form = await request.form()
    return {k: str(form[k]) for k in keys if k in form}


@router.post("/instances/{ref}/resources", response_class=HTMLResponse)
async def set_resources(page: Ctx, ref: str) -> Response:
    submitted = await _form_values(page.request, EDITABLE)
    return await _in_thread(lambda: _set_resources(page, ref, submitted))


def _set_resources(page: Page, ref: str, submitted: dict[str, str]) -> Response:
    view = view_of(page, ref)
    page.require("set_resources")
    current = view.record.resources
    changed: dict[str, str] = {}
    for key, raw in submitted.items():
        if not raw.strip() and getattr(current, key) is None:
            continue
        try:
            same = getattr(apply_settings(current, {key: raw}), key) == getattr(current, key)
        except CorralError:
            same = False  # the service refuses it with its own message
        if not same:
            changed[key] = raw
    if not changed:
        return _page(page, ref, notice="nothing changed")
    result, errors = attempt(lambda: page.app.resources.set(view.record.name, changed),
                             EDITABLE)
    if result is None:
        return _page(page, ref, 200 if page.htmx else 400, errors=errors,
                     submitted=submitted)
    _rec, applied = result
    return _page(page, ref, changes=list(applied.changes))


@router.post("/instances/{ref}/snapshots", response_class=HTMLResponse)
def create_snapshot(page: Ctx, ref: str, name: Annotated[str, Form()] = "") -> Response:
    view = view_of(page, ref)
    page.require("create_snapshot")
    op, errors = attempt(lambda: page.app.snapshots.create(view.record.name, name.strip()),
                         ("name",))
    problem = errors.get("name") or errors.get("") if op is None else _ended(page, op.id)
    return _page(page, ref, problem=problem,
                 notice=None if problem else f"snapshot {name.strip()} taken")


@router.post("/instances/{ref}/snapshots/{snapshot}/revert", response_class=HTMLResponse)
def revert_snapshot(page: Ctx, ref: str, snapshot: str) -> Response:
    view = view_of(page, ref)
    page.require("revert_snapshot")
    op, errors = attempt(lambda: page.app.snapshots.revert(view.record.name, snapshot), ())
    problem = errors.get("") if op is None else _ended(page, op.id)
    return _page(page, ref, problem=problem,
                 notice=None if problem else f"reverted to {snapshot}")


@router.post("/instances/{ref}/backups", response_class=HTMLResponse)
def create_backup(page: Ctx, ref: str, target: Annotated[str, Form()] = "") -> Response:
    view = view_of(page, ref)
    page.require("create_backup")
    known = any(t.name == target for t in page.app.backups.targets())
    page.policy.target(target, known, None)
    op, errors = attempt(lambda: page.app.backups.create(view.record.name, target), ())
    problem = errors.get("") if op is None else _ended(page, op.id)
    return _page(page, ref, problem=problem,
                 notice=None if problem else f"backed up to {target}")


@router.post("/instances/{ref}/backups/{backup_id}/restore", response_class=HTMLResponse)
def restore_backup(page: Ctx, ref: str, backup_id: str,
                   target: Annotated[str, Form()] = "") -> Response:
    view = view_of(page, ref)
    page.require("restore_backup")
    known = any(t.name == target for t in page.app.backups.targets())
    page.policy.target(target, known, None)
    op, errors = attempt(lambda: page.app.restores.restore(
        target, backup_id, None, None, page.policy), ())
    problem = errors.get("") if op is None else _ended(page, op.id)
    return _page(page, view.record.name, problem=problem,
                 notice=None if problem else f"restored backup {backup_id}")


async def _in_thread(work: Any) -> Response:
    result: Response = await run_in_threadpool(work)
    return result
