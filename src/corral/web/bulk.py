"""Bulk actions on the instances table's selection: start, stop, restart, snapshot, backup,
delete (after a confirmation naming every instance), with one result a selected instance.

Each item is the same work as the instance page's button for it: the policy is asked by the
API route's name (``start_instance``, ``create_snapshot`` ...), the instance must be one
the caller may see (another owner's answers as missing), and the service's own operation
runs it. The operations are all started first and then waited for, so they run side by
side as the operations manager allows. (The bulk-operations service -- one parent
operation with the items as children, ``services/bulk.py`` -- was not on main when this was
written; switching this route to it keeps the page and its results as they are.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from corral.domain.errors import CorralError, Forbidden, InvalidInput
from corral.web.instance import view_of
from corral.web.pages import Ctx, Page
from corral.web.session import PATH

router = APIRouter(prefix=PATH, include_in_schema=False)

ACTIONS = {  # bulk action -> the API action the policy is asked for
    "start": "start_instance", "stop": "stop_instance", "restart": "restart_instance",
    "snapshot": "create_snapshot", "backup": "create_backup", "delete": "delete_instance",
}
WAIT = 120.0
MAX_ITEMS = 200


@dataclass
class Item:
    name: str
    ok: bool = False
    message: str = ""
    operation: str | None = None


def _launcher(page: Page, action: str, snapshot: str, target: str
              ) -> Callable[[str], Any]:
    app = page.app
    if action == "snapshot":
        return lambda name: app.snapshots.create(name, snapshot)
    if action == "backup":
        return lambda name: app.backups.create(name, target)
    if action == "delete":
        return lambda name: app.instances.delete(name, force=True)
    return getattr(app.instances, action)  # type: ignore[no-any-return]


def run_bulk(page: Page, action: str, names: list[str], snapshot: str,
             target: str) -> list[Item]:
    if action not in ACTIONS:
        raise InvalidInput(f"no bulk action '{action}' ({', '.join(ACTIONS)})")
    page.require(ACTIONS[action])
    if action == "snapshot" and not snapshot:
        raise InvalidInput("a bulk snapshot needs a snapshot name")
    if action == "backup":
        known = any(t.name == target for t in page.app.backups.targets())
        page.policy.target(target, known, None)
    launch = _launcher(page, action, snapshot, target)
    items = [Item(n) for n in dict.fromkeys(names)]
    for item in items:
        try:
            item.name = view_of(page, item.name).record.name
            item.operation = launch(item.name).id
        except Forbidden:
            raise
        except CorralError as exc:
            item.message = exc.message
    for item in items:
        if item.operation is None:
            continue
        op = page.app.operations.wait(item.operation, WAIT)
        item.ok = op.status.value == "success"
        if item.ok:
            item.message = {"snapshot": f"snapshot {snapshot} taken",
                            "backup": f"backed up to {target}",
                            "delete": "deleted"}.get(action, f"{action}: done")
        elif not op.status.final:
            item.message = f"operation {op.id} is still running ({op.phase or op.action})"
        else:
            item.message = op.error or f"operation {op.id} ended {op.status.value}"
    return items


def _names(raw: list[str]) -> list[str]:
    return [n.strip() for n in raw if n.strip()]


@router.post("/instances/bulk", response_class=HTMLResponse)
async def bulk(page: Ctx, action: Annotated[str, Form()] = "",
               names: Annotated[list[str] | None, Form()] = None,
               snapshot: Annotated[str, Form()] = "", target: Annotated[str, Form()] = "",
               confirm: Annotated[str, Form()] = "") -> HTMLResponse:
    chosen = _names(names or [])
    refused = 200 if page.htmx else 400  # htmx swaps no 4xx answer in
    if not chosen:
        return page.render("_bulk_results.html", refused, problem="select at least one instance")
    if len(chosen) > MAX_ITEMS:
        return page.render("_bulk_results.html", refused,
                           problem=f"at most {MAX_ITEMS} instances at once")
    if action == "delete" and confirm != f"delete {len(chosen)}":
        page.require("delete_instance")
        return page.render("_bulk_results.html", confirm_delete=chosen)
    snap = re.sub(r"\s+", "-", snapshot.strip())
    try:
        items = await run_in_threadpool(run_bulk, page, action, chosen, snap, target.strip())
    except Forbidden:
        raise
    except CorralError as exc:
        return page.render("_bulk_results.html", refused, problem=exc.message)
    return page.render("_bulk_results.html", action=action, items=items,
                       failed=sum(1 for i in items if not i.ok))
