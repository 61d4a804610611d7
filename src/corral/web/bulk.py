"""Bulk actions on the instances table's selection: start, stop, restart, snapshot, backup,
delete (after a confirmation naming every instance), with one result a selected instance.

The selection goes to the bulk-operations service (``services/bulk.py``, what
``POST /api/v1/bulk`` calls): one parent operation with a child operation per item, the
policy asked as the API asks it (``Access.bulk``: the single-instance route the action
repeats; items only among the caller's instances; a backup target through
``Access.target``). The page waits for the parent and lists each child's outcome.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from corral.domain.bulk import BulkAction, ItemStatus
from corral.domain.errors import CorralError, Forbidden, InvalidInput
from corral.services.bulk import BulkRequest, outcome_of
from corral.web.pages import Ctx, Page
from corral.web.session import PATH

router = APIRouter(prefix=PATH, include_in_schema=False)

ACTIONS = ("start", "stop", "restart", "snapshot", "backup", "delete")
WAIT = 300.0
MAX_ITEMS = 200


@dataclass
class Item:
    name: str
    ok: bool = False
    message: str = ""
    operation: str | None = None


def run_bulk(page: Page, action: str, names: list[str], snapshot: str,
             target: str) -> tuple[str, list[Item]]:
    """(the parent operation's id, each item's outcome)."""
    if action not in ACTIONS:
        raise InvalidInput(f"no bulk action '{action}' ({', '.join(ACTIONS)})")
    app, policy = page.app, page.policy
    policy.bulk(action)
    if action == "snapshot" and not snapshot:
        raise InvalidInput("a bulk snapshot needs a snapshot name")
    if action == "backup" and target and not policy.admin:
        policy.target(target, app.backups.store.target(target) is not None, None)
    request = BulkRequest(action=BulkAction(action), names=tuple(dict.fromkeys(names)),
                          force=action == "delete", snapshot=snapshot or None,
                          target=target or None)
    parent = app.bulk.submit(request, lambda r: policy.owns(r.owner))
    app.operations.wait(parent.id, WAIT)
    items = []
    for child in app.bulk.children(parent.id):
        name = child.instance or "?"
        if not child.status.final:
            items.append(Item(name, False, f"still running ({child.phase or child.action})",
                              child.id))
            continue
        outcome = outcome_of(name, child)
        said = {"snapshot": f"snapshot {snapshot} taken", "backup": f"backed up to {target}",
                "delete": "deleted"}.get(action, f"{action}: done")
        message = outcome.message or said if outcome.status is ItemStatus.OK else \
            outcome.message or outcome.status.value
        if outcome.status is ItemStatus.SKIPPED:
            message = f"skipped: {outcome.message}" if outcome.message else "skipped"
        items.append(Item(name, outcome.status is not ItemStatus.FAILED, message, child.id))
    return parent.id, items


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
        parent, items = await run_in_threadpool(run_bulk, page, action, chosen, snap,
                                                target.strip())
    except Forbidden:
        raise
    except CorralError as exc:
        return page.render("_bulk_results.html", refused, problem=exc.message)
    return page.render("_bulk_results.html", action=action, items=items, parent=parent,
                       failed=sum(1 for i in items if not i.ok))
