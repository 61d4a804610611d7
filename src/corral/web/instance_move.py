"""The instance page's moves: migrate to a paired host (``migrate``; it runs on as
an operation, followed on the operations page) and convert CT <-> VM (``convert_instance``;
waited for, like the page's other actions)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import Response
from pydantic import ValidationError

from corral.domain.errors import InvalidInput
from corral.web.instance import _ended, _page, view_of
from corral.web.pages import Ctx, attempt
from corral.web.session import PATH
from corral.wire.migration import MigrateRequest

router = APIRouter(prefix=PATH, include_in_schema=False)


@router.post("/instances/{ref}/migrate")
def migrate(page: Ctx, ref: str, target: Annotated[str, Form()] = "",
            mode: Annotated[str, Form()] = "auto") -> Response:
    view = view_of(page, ref)
    page.require("migrate")
    try:
        request = MigrateRequest(target=target.strip(), mode=mode)  # type: ignore[arg-type]
    except ValidationError:
        raise InvalidInput(f"migration mode '{mode}' is not one of: auto, live, offline") \
            from None
    op, errors = attempt(lambda: page.app.migrations.migrate(view.record.name, request),
                         ("target",))
    if op is None:
        return _page(page, ref, problem=errors.get("target") or errors.get(""))
    return _page(page, ref, notice=f"migration to {request.target} started: operation {op.id}",
                 moving=op.id)


@router.post("/instances/{ref}/convert")
def convert(page: Ctx, ref: str, to: Annotated[str, Form()] = "",
            force: Annotated[str, Form()] = "") -> Response:
    view = view_of(page, ref)
    page.require("convert_instance")
    op, errors = attempt(lambda: page.app.convert.convert(view.record.name, to, bool(force)),
                         ())
    problem = errors.get("") if op is None else _ended(page, op.id)
    return _page(page, view.record.name, problem=problem,
                 notice=None if problem else f"converted to {to.upper()}")
