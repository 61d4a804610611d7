"""/api/v1/operations: list, show, wait, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from corral.api import convert
from corral.api.deps import Policy, corral
from corral.services.core import Corral
from corral.wire.models import OperationLogLineModel, OperationModel

router = APIRouter(prefix="/api/v1/operations", tags=["operations"])
App = Annotated[Corral, Depends(corral)]


@router.get("", response_model=list[OperationModel])
def list_operations(
    app: App, policy: Policy, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    children: bool = False,
) -> list[OperationModel]:
    """The newest operations (an owner: those it started); the items of bulk operations
    only with ``children``."""
    found = app.store.list_operations(limit, requested_by=policy.operations_filter,
                                      children=children)
    return [convert.operation(r) for r in found]


@router.get("/{op_id}", response_model=OperationModel)
def show_operation(op_id: str, app: App, policy: Policy) -> OperationModel:
    return convert.operation(policy.operation(app.store.get_operation(op_id), op_id))


@router.get("/{op_id}/log", response_model=list[OperationLogLineModel])
def operation_log(op_id: str, app: App, policy: Policy) -> list[OperationLogLineModel]:
    """The lines corrald logged while the operation's work ran (its phases, warnings and
    errors), oldest first; kept 31 days."""
    full_id = policy.operation(app.store.get_operation(op_id), op_id).id
    return [OperationLogLineModel(seq=ln.seq, time=ln.time, level=ln.level, logger=ln.logger,
                                  message=ln.message)
            for ln in app.operations.oplog.lines(full_id)]


@router.get("/{op_id}/children", response_model=list[OperationModel])
def list_children(op_id: str, app: App, policy: Policy) -> list[OperationModel]:
    """The items of a bulk operation (one child operation each), in order."""
    parent = policy.operation(app.store.get_operation(op_id), op_id)
    return [convert.operation(r) for r in app.bulk.children(parent.id)]


@router.get("/{op_id}/wait", response_model=OperationModel)
def wait_operation(
    op_id: str, app: App, policy: Policy, timeout: Annotated[float, Query(ge=0, le=600)] = 30
) -> OperationModel:
    full_id = policy.operation(app.store.get_operation(op_id), op_id).id
    return convert.operation(app.operations.wait(full_id, timeout))


@router.delete("/{op_id}", response_model=OperationModel)
def cancel_operation(op_id: str, app: App) -> OperationModel:
    return convert.operation(app.operations.cancel(app.store.get_operation(op_id).id))
