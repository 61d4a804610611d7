"""The ``ItemRunner`` of a cluster member: an item on this host runs through ``LocalRunner``;
one on another member is sent there as a one-item bulk request (``POST /api/v1/bulk`` over
the members' TLS API, as the requester: ``Forwarder``), whose operation is followed to its end
and whose one child's result is the item's. The owning member applies its own locks, checks
and policy, exactly as for a request made there.

Cancelling the bulk operation here reaches those items: while following one, a cancel of
the parent is passed on to the member (``DELETE /api/v1/operations/{id}`` of its
one-item bulk), which stops the item at its next step as it would its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from corral.cluster.store import ClusterStore, NodeInfo
from corral.domain.bulk import BulkAction, ItemOutcome, ItemStatus
from corral.domain.errors import HostFailure, NotFound
from corral.domain.users import Caller, Role
from corral.services.bulk import BulkRequest, Done, Item, ItemRunner
from corral.services.forwarding import MEMBER, Forwarded, Forwarder
from corral.services.operations import requester

POLL = 0.3  # seconds between reads of another member's operation
FINAL = ("success", "failure", "cancelled", "skipped")


def answer(found: Forwarded, node: str) -> dict[str, Any]:
    """A member's JSON answer; HostFailure with its message if it refused."""
    try:
        data: Any = json.loads(found.body)
    except ValueError:
        data = None
    if found.status >= 400 or not isinstance(data, dict):
        message = data.get("message") if isinstance(data, dict) else None
        raise HostFailure(f"member '{node}' answered {found.status}: "
                          f"{message or found.body[:200]!r}")
    return data


def follow(forwarder: Forwarder, info: NodeInfo, operation: dict[str, Any],
           caller: Caller, cancelled: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Read an operation another member runs until it ends; its final record. Once
    ``cancelled`` says so, the operation is cancelled there (once)."""
    sent = False
    while operation.get("status") not in FINAL:
        if not sent and cancelled():
            sent = True
            forwarder.forward(info, "DELETE", f"/api/v1/operations/{operation['id']}", "",
                              b"", None, caller)
        time.sleep(POLL)
        operation = answer(forwarder.forward(
            info, "GET", f"/api/v1/operations/{operation['id']}", "", b"", None, caller),
            info.node)
    return operation


def current_caller() -> Caller:
    """Who the items run as on the other member: the bulk request's user (by name, mapped
    there as any forwarded request), or an administrator."""
    who = requester.get()
    return MEMBER if who is None else Caller(who, Role.OWNER)


def one_item(request: BulkRequest, name: str) -> dict[str, Any]:
    return {"action": request.action.value, "names": [name], "parallel": 1,
            "force": request.force, "timeout": request.timeout, "argv": list(request.argv),
            "snapshot": request.snapshot, "memory": request.memory, "target": request.target,
            "key_file": request.key_file}


class ClusterRunner:
    def __init__(self, local: ItemRunner, is_local: Callable[[str], bool],
                 forwarder: Forwarder, store: Callable[[], ClusterStore],
                 cancelled: Callable[[str], bool] = lambda _parent: False) -> None:
        self.local = local
        self.is_local = is_local
        self.forwarder = forwarder
        self.store = store
        self.cancelled = cancelled
        """Whether the bulk operation (by id) was asked to cancel."""

    def run(self, request: BulkRequest, item: Item, parent: str) -> Done:
        if request.action is BulkAction.CREATE or self.is_local(item.name):
            return self.local.run(request, item, parent)
        store = self.store()
        node = store.locate(item.name)
        info = None if node is None else store.node_info(node)
        if info is None:
            raise NotFound(f"no instance '{item.name}'")
        caller = current_caller()
        started = answer(self.forwarder.forward(
            info, "POST", "/api/v1/bulk", "", json.dumps(one_item(request, item.name)).encode(),
            "application/json", caller), info.node)
        follow(self.forwarder, info, started, caller, lambda: self.cancelled(parent))
        children = self.forwarder.forward(
            info, "GET", f"/api/v1/operations/{started['id']}/children", "", b"", None, caller)
        try:
            child = json.loads(children.body)[0]
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise HostFailure(f"member '{info.node}' did not say how '{item.name}' went") \
                from exc
        status, phase = child.get("status"), str(child.get("phase") or "")
        on = f"on {info.node}"
        if status == "success":
            said = "" if phase in ("", "done") else phase
            return Done(ItemOutcome(item.name, ItemStatus.OK, f"{said} ({on})" if said else on))
        if status == "skipped":
            return Done(ItemOutcome(item.name, ItemStatus.SKIPPED, f"{phase} ({on})"))
        why = child.get("error") or status
        return Done(ItemOutcome(item.name, ItemStatus.FAILED, f"{why} ({on})"))
