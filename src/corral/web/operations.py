"""The operations page: every operation the caller may see (an owner: its own), newest
first, with its progress and phase, refreshed live by the events stream; a running one can
be cancelled (``cancel_operation``), and each shows its log lines (``operation_log``)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from corral.web.pages import Ctx
from corral.web.session import PATH

router = APIRouter(prefix=PATH, include_in_schema=False)
SHOWN = 200


def _page(page: Ctx, notice: str | None = None, problem: str | None = None) -> HTMLResponse:
    page.require("list_operations")
    ops = page.app.store.list_operations(SHOWN, page.policy.operations_filter)
    name = "_operations_table.html" if page.request.headers.get("hx-target") == \
        "operations-table" else "operations.html"
    return page.render(name, ops=ops, notice=notice, problem=problem)


@router.get("/operations", response_class=HTMLResponse)
def operations_page(page: Ctx) -> HTMLResponse:
    return _page(page)


@router.get("/operations/{op_id}", response_class=HTMLResponse)
def operation_page(page: Ctx, op_id: str) -> HTMLResponse:
    page.require("show_operation")
    op = page.policy.operation(page.app.store.get_operation(op_id), op_id)
    lines = page.app.operations.oplog.lines(op.id) if page.may("operation_log") else []
    return page.render("operation.html", op=op, lines=lines)


@router.post("/operations/{op_id}/cancel", response_class=HTMLResponse)
def cancel(page: Ctx, op_id: str) -> Response:
    page.require("cancel_operation")
    op = page.policy.operation(page.app.store.get_operation(op_id), op_id)
    done = page.app.operations.cancel(op.id)
    if done.status.final:
        return _page(page, problem=f"operation {op.id} already ended {done.status.value}")
    return _page(page, notice=f"asked operation {op.id} to stop at its next step")
