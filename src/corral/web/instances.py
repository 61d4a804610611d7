"""The instances table (search, filters, sort; refreshed live by events) and the create
wizard, whose errors are the API's own messages, shown at the field they name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse, Response

from corral.domain.errors import CorralError, InvalidInput
from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.domain.statuses import OperationStatus
from corral.services.instances import InstanceView
from corral.web.pages import Ctx, Page, attempt
from corral.web.session import PATH

router = APIRouter(prefix=PATH, include_in_schema=False)

SORTS = {
    "name": lambda v: v.record.name, "id": lambda v: v.record.id,
    "kind": lambda v: (v.record.kind.value, v.record.name),
    "state": lambda v: (v.state.value, v.record.name),
    "owner": lambda v: (v.record.owner or "", v.record.name),
    "cpus": lambda v: (v.record.resources.cpus, v.record.name),
    "memory": lambda v: (v.record.resources.memory, v.record.name),
    "disk": lambda v: (v.record.resources.disk, v.record.name),
    "node": lambda v: (v.record.node, v.record.name),
}
WIZARD_FIELDS = ("name", "kind", "template", "cpus", "memory", "disk", "network", "ip",
                 "owner", "start")
OP_WAIT = 120.0


def labels_of(view: InstanceView) -> dict[str, str]:
    """An instance's labels, where the model has them (the bulk-operations work adds them)."""
    found: Any = getattr(view.record, "labels", None)
    return dict(found) if isinstance(found, dict) else {}


@dataclass
class Filters:
    q: str = ""
    kind: str = ""
    state: str = ""
    owner: str = ""
    node: str = ""
    label: str = ""
    sort: str = "name"
    desc: bool = False

    def keep(self, view: InstanceView) -> bool:
        rec = view.record
        if self.q and self.q.lower() not in " ".join(
                [rec.name, str(rec.id), rec.template, *view.addresses]).lower():
            return False
        if self.kind and rec.kind.value != self.kind:
            return False
        if self.state and view.state.value != self.state:
            return False
        if self.owner and (rec.owner or "-") != self.owner:
            return False
        if self.node and rec.node != self.node:
            return False
        if self.label:
            key, _, value = self.label.partition("=")
            have = labels_of(view)
            if key not in have or (value and have[key] != value):
                return False
        return True

    def query(self, **override: str) -> str:
        values = {"q": self.q, "kind": self.kind, "state": self.state, "owner": self.owner,
                  "node": self.node, "label": self.label, "sort": self.sort,
                  "desc": "1" if self.desc else "", **override}
        return urlencode({k: v for k, v in values.items() if v})


def _table(page: Page, filters: Filters) -> dict[str, Any]:
    page.require("list_instances")
    views = page.app.instances.list_all(
        lambda records: page.policy.instances(records, lambda r: r.owner))
    shown = sorted((v for v in views if filters.keep(v)),
                   key=SORTS.get(filters.sort, SORTS["name"]), reverse=filters.desc)
    return {"views": shown, "total": len(views), "filters": filters,
            "owners": sorted({v.record.owner or "-" for v in views}),
            "nodes": sorted({v.record.node for v in views}),
            "kinds": [k.value for k in Kind], "states": [s.value for s in State],
            "labels_of": labels_of}


def _filters(q: str, kind: str, state: str, owner: str, node: str, label: str, sort: str,
             desc: str) -> Filters:
    return Filters(q.strip(), kind, state, owner, node, label.strip(),
                   sort if sort in SORTS else "name", desc in ("1", "true", "on"))


Q = Annotated[str, Query()]


@router.get("/instances", response_class=HTMLResponse)
def instances_page(page: Ctx, q: Q = "", kind: Q = "", state: Q = "", owner: Q = "",
                   node: Q = "", label: Q = "", sort: Q = "name", desc: Q = "") -> HTMLResponse:
    filters = _filters(q, kind, state, owner, node, label, sort, desc)
    if page.request.headers.get("hx-target") == "instances-table":
        return page.render("_instances_table.html", **_table(page, filters))
    targets = [t.name for t in page.app.backups.targets()] if page.may("create_backup") else []
    return page.render("instances.html", targets=targets, **_table(page, filters))


# The create wizard ---------------------------------------------------------------------
def _wizard(page: Page, values: dict[str, str], errors: dict[str, str],
            status: int = 200) -> HTMLResponse:
    page.require("create_instance")
    templates = [t.name for t in page.app.templates.list()]
    networks = [n.name for n in page.app.networks.list_networks()] \
        if page.may("list_networks") else []
    users = [u.name for u in page.app.users.list()] if page.may("list_users") else []
    name = "_wizard_form.html" if page.htmx else "wizard.html"
    return page.render(name, status=status, values=values, errors=errors,
                       templates=templates, networks=networks, users=users)


@router.get("/instances/new", response_class=HTMLResponse)
def wizard_page(page: Ctx) -> HTMLResponse:
    return _wizard(page, {"kind": "ct", "cpus": "1", "memory": "256M", "disk": "1G",
                          "start": "on"}, {})


@dataclass
class Created:
    name: str
    notes: list[str] = field(default_factory=list)


def _wait_ok(page: Page, op_id: str) -> None:
    op = page.app.operations.wait(op_id, OP_WAIT)
    if op.status is not OperationStatus.SUCCESS:
        raise InvalidInput(op.error or f"operation {op.id} ended {op.status.value}")


def _create(page: Page, values: dict[str, str]) -> Created:
    """The wizard's work, all or nothing: create, add the NIC, start. A failure after the
    create deletes what was made (the instance is then as if never asked for)."""
    name = values["name"].strip()
    network = values.get("network", "")
    ip = values.get("ip", "").strip()
    if network:
        page.require("add_nic")
        page.app.networks.get_network(network)  # a missing network: refused before anything
    elif ip:
        raise InvalidInput("an IP address needs a network: choose one")
    owner = values.get("owner", "").strip() or None  # as the API's create: no other action
    settings = {k: values[k].strip() for k in ("cpus", "memory", "disk")
                if values.get(k, "").strip()}
    start = values.get("start") == "on"
    op = page.app.instances.create(name, values.get("kind", ""), values.get("template", ""),
                                   settings, start=start and not network, owner=owner)
    _wait_ok(page, op.id)
    if not network:
        return Created(name)
    try:
        page.app.networks.add_nic(name, network, [ip] if ip else None)
        if start:
            page.require("start_instance")
            _wait_ok(page, page.app.instances.start(name).id)
    except CorralError:
        page.app.operations.wait(page.app.instances.delete(name, force=True).id, OP_WAIT)
        raise
    return Created(name)


@router.post("/instances", response_class=HTMLResponse)
def create_from_wizard(
    page: Ctx,
    name: Annotated[str, Form()] = "", kind: Annotated[str, Form()] = "",
    template: Annotated[str, Form()] = "", cpus: Annotated[str, Form()] = "",
    memory: Annotated[str, Form()] = "", disk: Annotated[str, Form()] = "",
    network: Annotated[str, Form()] = "", ip: Annotated[str, Form()] = "",
    owner: Annotated[str, Form()] = "", start: Annotated[str, Form()] = "",
) -> Response:
    page.require("create_instance")
    values = {"name": name, "kind": kind, "template": template, "cpus": cpus,
              "memory": memory, "disk": disk, "network": network, "ip": ip, "owner": owner,
              "start": start}
    made, errors = attempt(lambda: _create(page, values), WIZARD_FIELDS)
    if made is None:
        return _wizard(page, values, errors, 200 if page.htmx else 400)
    return page.redirect(f"{PATH}/instances/{made.name}")

