"""The dashboard: this host's commitment against its policy, instances by kind and state,
failed operations, recent operations and live events. Each panel is shown when the policy
allows its API action (``capacity``, ``list_instances``, ``list_operations``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.domain.statuses import OperationStatus
from corral.web.pages import Ctx, Page
from corral.web.session import PATH

router = APIRouter(prefix=PATH, include_in_schema=False)

RESOURCE_LABELS = {"cpu": "CPUs", "memory": "Memory", "disk": "Disk"}


def commitment(page: Page) -> list[dict[str, Any]]:
    rows = []
    for resource, values in page.app.capacity.report().items():
        physical = values["physical"] or 0
        allocated = values["allocated"] or 0
        ratio = values["ratio"]
        limit = values["max_ratio"]
        share = (float(ratio) / float(limit)) if ratio is not None and limit else None
        rows.append({
            "resource": resource, "label": RESOURCE_LABELS.get(resource, resource),
            "physical": physical, "allocated": allocated, "ratio": ratio, "max_ratio": limit,
            "percent": min(round(100 * share), 100) if share is not None else 0,
            "level": "bad" if share is not None and share >= 0.9 else
                     "warn" if share is not None and share >= 0.7 else "ok",
            "sized": resource != "cpu",
        })
    return rows


@router.get("/", response_class=HTMLResponse)
def dashboard(page: Ctx) -> HTMLResponse:
    values: dict[str, Any] = {"node": page.app.instances.node}
    if page.may("capacity"):
        values["commitment"] = commitment(page)
    if page.may("list_instances"):
        views = page.app.instances.list_all(
            lambda records: page.policy.instances(records, lambda r: r.owner))
        counts = Counter((v.record.kind.value, v.state.value) for v in views)
        values["kinds"] = [k.value for k in Kind]
        values["states"] = [s.value for s in State
                            if any(counts[(k.value, s.value)] for k in Kind)]
        values["counts"] = counts
        values["total"] = len(views)
    if page.may("list_operations"):
        recent = page.app.store.list_operations(200, page.policy.operations_filter)
        values["failed"] = [op for op in recent if op.status is OperationStatus.FAILURE][:10]
        values["recent"] = recent[:10]
    return page.render("dashboard.html", **values)
